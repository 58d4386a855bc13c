"""Native API details checked on the wire: errors, headers, unload, blobs, stream flags."""

from __future__ import annotations

import hashlib
import json

import aiohttp
import pytest

import olol
from tests.proxy.helpers import ndjson, proxy_over
from tests.support.ollama_sim import OllamaSim


@pytest.fixture
async def two_hosts(ollama_sim_factory):  # type: ignore[no-untyped-def]
    return await ollama_sim_factory.many(2)


async def test_bad_requests_and_missing_models_answer_like_ollama(two_hosts: list[OllamaSim]) -> None:
    async with proxy_over(*two_hosts) as proxy, aiohttp.ClientSession() as http:
        async with http.post(proxy.url + "/api/generate", json={"prompt": "x"}) as r:
            assert r.status == 400 and await r.json() == {"error": "model is required"}
        async with http.post(proxy.url + "/api/chat", data=b"{nope") as r:
            assert r.status == 400 and "error" in await r.json()
        async with http.post(proxy.url + "/api/generate", json={"model": "nope", "prompt": "x"}) as r:
            assert r.status == 404
            assert await r.json() == {"error": "model 'nope' not found"}  # Ollama's current wording
        async with http.post(proxy.url + "/api/embed", json={"model": "nope", "input": "x"}) as r:
            assert r.status == 404


@pytest.mark.parametrize(
    ("method", "path", "body", "text"),
    [  # Ollama's server/routes.go, verb by verb
        ("POST", "/api/generate", {"model": "nope", "prompt": "x"}, "model 'nope' not found"),
        ("POST", "/api/chat", {"model": "nope", "messages": []}, "model 'nope' not found"),
        ("POST", "/api/embed", {"model": "nope", "input": "x"}, "model 'nope' not found"),
        ("POST", "/api/embeddings", {"model": "nope", "prompt": "x"}, 'model "nope" not found, try pulling it first'),
        ("POST", "/api/show", {"model": "nope"}, "model 'nope' not found"),
        ("DELETE", "/api/delete", {"model": "nope"}, "model 'nope' not found"),
        ("POST", "/api/copy", {"source": "nope", "destination": "x"}, 'model "nope" not found'),
    ],
)
async def test_not_found_texts_are_ollamas_per_verb(two_hosts: list[OllamaSim], method: str, path: str,
                                                    body: dict[str, object], text: str) -> None:
    async with proxy_over(*two_hosts) as proxy, aiohttp.ClientSession() as http, \
            http.request(method, proxy.url + path, json=body) as r:
        assert (r.status, await r.json()) == (404, {"error": text})


async def test_stream_is_ndjson_and_headers_say_where(two_hosts: list[OllamaSim]) -> None:
    async with proxy_over(*two_hosts) as proxy, aiohttp.ClientSession() as http:
        async with http.post(proxy.url + "/api/generate", json={"model": "llama3.2", "prompt": "x"}) as r:
            assert r.headers["Content-Type"] == "application/x-ndjson"
            assert r.headers["X-OLOL-Host"] in {s.url for s in two_hosts}
            assert r.headers["X-OLOL-Model"] == "llama3.2" and r.headers["X-OLOL-Route"] == "cache_aware"
            lines = await ndjson(r)
        assert lines[-1]["done"] is True and {"eval_count", "total_duration"} <= set(lines[-1])
        async with http.post(proxy.url + "/api/generate",
                             json={"model": "llama3.2", "prompt": "x", "stream": False}) as r:
            assert r.headers["Content-Type"].startswith("application/json")
            body = await r.json()
        assert body["response"] == "".join(line["response"] for line in lines) and "context" in body


@pytest.mark.parametrize(("path", "body", "model"), [
    ("/api/create", {"model": "brief", "from": "llama3.2", "system": "Be brief."}, "brief"),  # manage's feed
    ("/api/pull", {"model": "qwen2.5:0.5b"}, "qwen2.5:0.5b"),  # placement's feed
])
async def test_a_streamed_success_comes_after_the_hosts_models_are_reread(
    two_hosts: list[OllamaSim], path: str, body: dict[str, str], model: str
) -> None:
    # ollama-js stops reading at "success" and uses the model at once: the proxy must know it by then.
    async with proxy_over(*two_hosts, probe_interval=60) as proxy, aiohttp.ClientSession() as http:
        async with http.post(proxy.url + path, json=body) as r:
            async for line in r.content:
                if json.loads(line).get("status") == "success":
                    break
            known = [h.id for h in proxy.context.cluster.hosts_with(model)]
        async with http.post(proxy.url + "/api/show", json={"model": model}) as r:
            assert r.status == 200, await r.text()
    assert known


async def test_keep_alive_zero_unloads_everywhere(two_hosts: list[OllamaSim]) -> None:
    async with proxy_over(*two_hosts, affinity=False, balancer="round_robin") as proxy, \
            aiohttp.ClientSession() as http:
        for _ in range(2):
            async with http.post(proxy.url + "/api/generate", json={"model": "llama3.2", "prompt": ""}) as r:
                await r.read()
        assert all(s.loaded_models() == ["llama3.2:latest"] for s in two_hosts)
        async with http.post(proxy.url + "/api/generate",
                             json={"model": "llama3.2", "prompt": "", "keep_alive": 0}) as r:
            assert (await r.json())["done_reason"] == "unload"
        assert all(s.loaded_models() == [] for s in two_hosts)


async def test_blob_upload_is_stored_on_the_hosts(two_hosts: list[OllamaSim]) -> None:
    data = b"GGUF" + b"\x00" * 1000
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    async with proxy_over(*two_hosts) as proxy, aiohttp.ClientSession() as http:
        async with http.head(f"{proxy.url}/api/blobs/{digest}") as r:
            assert r.status == 404
        async with http.post(f"{proxy.url}/api/blobs/{digest}", data=b"tampered") as r:
            assert r.status == 400 and "digest mismatch" in (await r.json())["error"]
        async with http.post(f"{proxy.url}/api/blobs/{digest}", data=data) as r:
            assert r.status == 201
        async with http.head(f"{proxy.url}/api/blobs/{digest}") as r:
            assert r.status == 200
    assert all(s.blobs.get(digest) == data for s in two_hosts)


async def test_copy_with_one_host_failing_is_reported(two_hosts: list[OllamaSim]) -> None:
    async with proxy_over(*two_hosts, probe_interval=5) as proxy, aiohttp.ClientSession() as http:
        del two_hosts[1].models["llama3.2:latest"]  # the proxy still thinks it has it
        async with http.post(proxy.url + "/api/copy", json={"source": "llama3.2", "destination": "x"}) as r:
            assert r.status == 200
            assert r.headers["X-OLOL-Partial-Failure"] == two_hosts[1].url
            report = (await r.json())["olol"]
        assert report["succeeded"] == [two_hosts[0].url] and two_hosts[1].url in report["failed"]


async def test_legacy_embeddings_empty_prompt(two_hosts: list[OllamaSim]) -> None:
    body = {"model": "nomic-embed-text", "prompt": ""}
    async with proxy_over(*two_hosts) as proxy, aiohttp.ClientSession() as http, \
            http.post(proxy.url + "/api/embeddings", json=body) as r:
        assert await r.json() == {"embedding": []}


async def test_version_is_the_lowest_ollama_api_of_the_hosts(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    old, new = await ollama_sim_factory(version="0.9.6"), await ollama_sim_factory(version="0.13.1")
    async with proxy_over(old, new) as proxy, aiohttp.ClientSession() as http, \
            http.get(proxy.url + "/api/version") as r:
        assert await r.json() == {"version": "0.9.6", "olol": {"version": olol.__version__}}
    async with proxy_over(new, probe_interval=60) as proxy, aiohttp.ClientSession() as http:
        async with http.get(proxy.url + "/api/version") as r:
            assert (await r.json())["version"] == "0.13.1"
        # A llama.cpp host speaks the Ollama API release OLOL implements (never OLOL's own version).
        host = proxy.context.cluster.hosts[new.url]
        host.kind, host.version = "llamacpp", "b6500"
        async with http.get(proxy.url + "/api/version") as r:
            assert await r.json() == {"version": olol.OLLAMA_API_VERSION, "olol": {"version": olol.__version__}}


async def test_what_a_host_cannot_do_is_501_for_every_verb() -> None:
    # A cluster of hosts that cannot manage models (as llama.cpp hosts): copy was 501, create and pull 500.
    from olol.proxy import ProxyConfig, start_proxy
    from tests.proxy.fakes import FakeBackend

    proxy = await start_proxy(ProxyConfig(host="127.0.0.1", port=0, servers=["fake-a", "fake-b"]),
                              backend_factory=lambda _spec: FakeBackend(["tiny:latest"]))
    try:
        async with aiohttp.ClientSession() as http:
            for method, path, body in [
                ("POST", "/api/pull", {"model": "qwen2.5:0.5b", "stream": False}),
                ("POST", "/api/create", {"model": "t2", "from": "tiny", "stream": False}),
                ("POST", "/api/push", {"model": "tiny", "stream": False}),
                ("POST", "/api/copy", {"source": "tiny", "destination": "t2"}),
                ("DELETE", "/api/delete", {"model": "tiny"}),
            ]:
                async with http.request(method, proxy.url + path, json=body) as r:
                    error = (await r.json())["error"]
                    assert r.status == 501 and "cannot" in error, (path, r.status, error)
    finally:
        await proxy.stop()
