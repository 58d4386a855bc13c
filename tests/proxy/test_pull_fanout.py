"""Pull to several hosts at once: one merged Ollama-format feed, partial failure reported."""

from __future__ import annotations

import aiohttp
import ollama
import pytest

from tests.proxy.helpers import ndjson, proxy_over
from tests.support.ollama_sim import ModelSpec

NEW = "qwen2.5:0.5b"


async def test_one_host_failing_is_reported_and_the_rest_succeed(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    good = await ollama_sim_factory()
    bad = await ollama_sim_factory(registry=[ModelSpec("other:1b")])  # its registry lacks the model
    async with proxy_over(good, bad) as proxy, aiohttp.ClientSession() as http:
        async with http.post(proxy.url + "/api/pull", json={"model": NEW}) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "application/x-ndjson"
            lines = await ndjson(resp)
        statuses = [line["status"] for line in lines]
        assert statuses[0] == "pulling manifest" and statuses.count("pulling manifest") == 1
        failure = next(line for line in lines if "olol" in line and line["olol"].get("host") == bad.url)
        assert "file does not exist" in failure["olol"]["error"] and "error" not in failure
        layers = [line for line in lines if "digest" in line]
        assert layers and all(line["completed"] <= line["total"] for line in layers)
        assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
        assert lines[-1]["olol"]["hosts"] == [good.url] and bad.url in lines[-1]["olol"]["failed"]
        # The proxy's view has the new model right away, only where it landed.
        async with http.get(proxy.url + "/api/tags") as resp:
            where = {m["name"]: m["olol"]["hosts"] for m in (await resp.json())["models"]}
        assert where[NEW] == [good.url]
        assert (await ollama.AsyncClient(host=proxy.url).generate(model=NEW, prompt="x")).done


async def test_official_client_sees_a_normal_pull(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    good = await ollama_sim_factory(pull_delay=0.001)
    bad = await ollama_sim_factory(registry=[])
    async with proxy_over(good, bad) as proxy:
        progress = [p async for p in await ollama.AsyncClient(host=proxy.url).pull(NEW, stream=True)]
        assert progress[-1].status == "success"
        by_layer: dict[str, list[tuple[int, int]]] = {}
        for p in progress:
            if p.digest:
                by_layer.setdefault(p.digest, []).append((p.total or 0, p.completed or 0))
        # A layer's total is its size from the start, and its bar only moves forward, without repeats.
        assert by_layer and all(len({t for t, _ in lines}) == 1 for lines in by_layer.values())
        assert all([c for _, c in lines] == sorted(set(c for _, c in lines)) for lines in by_layer.values())


async def test_two_replicas_show_the_layer_size_once(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    alone, *pair = await ollama_sim_factory.many(3)
    async with aiohttp.ClientSession() as http:
        async with http.post(alone.url + "/api/pull", json={"model": NEW}) as resp:  # one Ollama, directly
            sizes = {line["digest"]: line["total"] for line in await ndjson(resp) if "digest" in line}
        async with proxy_over(*pair, replicas=2) as proxy, http.post(proxy.url + "/api/pull", json={"model": NEW}) as r:
            lines = await ndjson(r)
    assert lines[-1]["status"] == "success" and len(lines[-1]["olol"]["hosts"]) == 2
    layers = [line for line in lines if "digest" in line]
    assert sizes and {line["digest"]: line["total"] for line in layers} == sizes  # not twice the size
    assert all(max(x["completed"] for x in layers if x["digest"] == d) == size for d, size in sizes.items())
    shown = [(line["digest"], line["completed"]) for line in layers]
    assert len(shown) == len(set(shown))  # no line repeated


async def test_every_host_failing_ends_in_an_error(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    sims = await ollama_sim_factory.many(2, registry=[])
    async with proxy_over(*sims) as proxy, aiohttp.ClientSession() as http:
        with pytest.raises(ollama.ResponseError, match="failed on every host"):
            async for _ in await ollama.AsyncClient(host=proxy.url).pull(NEW, stream=True):
                pass
        async with http.post(proxy.url + "/api/pull", json={"model": NEW, "stream": False}) as resp:
            # No registry has the model: the client's mistake, so 404 (a server-side failure stays 500).
            assert resp.status == 404 and "failed on every host" in (await resp.json())["error"]
            assert "X-OLOL-Report" in resp.headers


async def test_replicas_header_overrides_the_default(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    sims = await ollama_sim_factory.many(3)
    async with proxy_over(*sims) as proxy, aiohttp.ClientSession() as http, \
            http.post(proxy.url + "/api/pull", headers={"X-OLOL-Replicas": "1"},
                      json={"model": NEW, "stream": False}) as resp:
        assert (await resp.json())["status"] == "success"
    assert sum(s.requests["/api/pull"] for s in sims) == 1
