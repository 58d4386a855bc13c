"""The proxy's HTTP gate: API keys and scopes, rate limits, body and header limits, Ollama-shaped 400s."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import ollama
import pytest

from olol.security.apikeys import ApiKeys
from olol.security.limits import HttpLimits, RateLimiter
from olol.security.settings import SecuritySettings
from tests.proxy.helpers import proxy_over

FULL_KEY = "full-key-0123456789abcdef"
READ_KEY = "read-key-0123456789abcdef"
GEN = {"model": "llama3.2", "prompt": "hi", "stream": False}


def _keys() -> SecuritySettings:
    return SecuritySettings(api_keys=ApiKeys.parse([FULL_KEY, f"{READ_KEY}:read"]))


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_api_keys_stranger_gets_401_and_members_are_served(ollama_sim) -> None:  # type: ignore[no-untyped-def]
    async with proxy_over(ollama_sim, security=_keys()) as proxy, aiohttp.ClientSession() as http:
        for headers in (
            {},
            _auth("wrong-key-0123456789abcdef"),
            {"Authorization": FULL_KEY},
            {"Authorization": f"Basic {FULL_KEY}"},
        ):
            async with http.post(proxy.url + "/api/generate", json=GEN, headers=headers) as resp:
                assert resp.status == 401
                assert (await resp.json())["error"].startswith("unauthorized")
                assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        async with http.get(proxy.url + "/api/status") as resp:
            assert resp.status == 401
        async with http.post(proxy.url + "/v1/chat/completions", json={"model": "llama3.2"}) as resp:
            assert resp.status == 401 and "message" in (await resp.json())["error"]  # OpenAI's error shape
        async with http.get(proxy.url + "/") as resp:  # liveness stays open: it tells nothing
            assert resp.status == 200
        async with http.post(proxy.url + "/api/generate", json=GEN, headers=_auth(FULL_KEY)) as resp:
            assert resp.status == 200 and (await resp.json())["done"]
    assert ollama_sim.requests["/api/generate"] == 1


async def test_the_official_client_works_with_a_key(ollama_sim) -> None:  # type: ignore[no-untyped-def]
    async with proxy_over(ollama_sim, security=_keys()) as proxy:
        client = ollama.AsyncClient(host=proxy.url, headers=_auth(FULL_KEY))
        assert (await client.generate(model="llama3.2", prompt="hi")).done
        stranger = ollama.AsyncClient(host=proxy.url)
        with pytest.raises(ollama.ResponseError) as info:
            await stranger.generate(model="llama3.2", prompt="hi")
        assert info.value.status_code == 401


async def test_read_only_key_sees_status_and_metrics_only(ollama_sim) -> None:  # type: ignore[no-untyped-def]
    async with proxy_over(ollama_sim, security=_keys()) as proxy, aiohttp.ClientSession() as http:
        for path in ("/api/status", "/metrics", "/api/version"):
            async with http.get(proxy.url + path, headers=_auth(READ_KEY)) as resp:
                assert resp.status == 200, path
        for method, path in (
            ("POST", "/api/generate"),
            ("GET", "/api/tags"),
            ("POST", "/api/pull"),
            ("DELETE", "/api/delete"),
        ):
            async with http.request(method, proxy.url + path, json=GEN, headers=_auth(READ_KEY)) as resp:
                assert resp.status == 403, path
                assert "read-only" in (await resp.json())["error"]
    assert ollama_sim.requests["/api/generate"] == 0


async def test_rate_limit_per_key_answers_429_with_retry_after(ollama_sim) -> None:  # type: ignore[no-untyped-def]
    settings = _keys()
    settings.limits = HttpLimits(rate=1.0, burst=3)
    async with proxy_over(ollama_sim, security=settings) as proxy, aiohttp.ClientSession() as http:
        statuses = []
        for _ in range(5):
            async with http.get(proxy.url + "/api/version", headers=_auth(FULL_KEY)) as resp:
                statuses.append(resp.status)
                if resp.status == 429:
                    assert int(resp.headers["Retry-After"]) >= 1
                    assert "rate limit" in (await resp.json())["error"]
        assert statuses == [200, 200, 200, 429, 429]
        async with http.get(proxy.url + "/api/version", headers=_auth(READ_KEY)) as resp:
            assert resp.status == 200  # another key has its own bucket


def test_rate_limiter_refills_and_bounds_its_table() -> None:
    limiter = RateLimiter(2.0, burst=2, max_keys=3)
    assert [limiter.acquire("a", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.5]
    assert limiter.acquire("a", now=0.5) == 0.0  # refilled one token in 0.5 s at 2/s
    for key in "bcdef":
        limiter.acquire(key, now=1.0)
    assert len(limiter._buckets) == 3


BAD_BODIES = [
    (b"{not json", "invalid character 'n' looking for beginning of object key string"),  # Go's words, as Ollama
    (b"[1, 2]", "cannot unmarshal array"),
    (b'"text"', "cannot unmarshal string"),
    (b'{"model": 3, "prompt": "hi"}', "GenerateRequest.model of type string"),
    (b'{"model": "llama3.2", "stream": "yes"}', "GenerateRequest.stream of type bool"),
    (b'{"model": "llama3.2", "images": [1]}', "GenerateRequest.images"),
    (b'{"model": "llama3.2", "options": {"temperature": "hot"}}', 'option "temperature" must be of type float32'),
    (b'{"model": "llama3.2", "options": []}', "GenerateRequest.options"),
    (b'{"model": "llama3.2", "prompt": NaN}', "invalid character 'N'"),
    (b'{"model": "llama3.2", "prompt": "\\ud800"}', "lone surrogate"),
    (b"[" * 50_000 + b"]" * 50_000, "max depth"),
    (b'{"model": "llama3.2", "context": [1e400]}', "GenerateRequest.context"),
]


@pytest.mark.parametrize(("raw", "message"), BAD_BODIES)
async def test_malformed_bodies_get_ollama_shaped_400s(ollama_sim, raw: bytes, message: str) -> None:  # type: ignore[no-untyped-def]
    async with (
        proxy_over(ollama_sim) as proxy,
        aiohttp.ClientSession() as http,
        http.post(proxy.url + "/api/generate", data=raw, headers={"Content-Type": "application/json"}) as resp,
    ):
        assert resp.status == 400
        body = await resp.json()
        assert set(body) == {"error"} and message in body["error"]
    assert ollama_sim.requests["/api/generate"] == 0


async def test_chat_messages_are_type_checked_and_v1_errors_are_openai_shaped(ollama_sim) -> None:  # type: ignore[no-untyped-def]
    async with proxy_over(ollama_sim) as proxy, aiohttp.ClientSession() as http:
        bad = {"model": "llama3.2", "messages": [{"role": "user", "content": ["not", "text"]}]}
        async with http.post(proxy.url + "/api/chat", json=bad) as resp:
            assert resp.status == 400 and "ChatRequest.messages.content" in (await resp.json())["error"]
        async with http.post(proxy.url + "/v1/chat/completions", json={"model": 1, "messages": []}) as resp:
            assert resp.status == 400
            error = (await resp.json())["error"]
            assert error["type"] == "invalid_request_error" and "model" in error["message"]
        # OpenAI's SDKs send fields this proxy does not know: ignored there, as Ollama's /v1 does.
        ok = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "user": "u1", "logprobs": False}
        async with http.post(proxy.url + "/v1/chat/completions", json=ok) as resp:
            assert resp.status == 200


async def test_unknown_fields_are_ignored_as_ollama_does(ollama_sim) -> None:  # type: ignore[no-untyped-def]
    # Ollama binds with gin and ignores unknown fields: a client newer than the proxy keeps working.
    async with proxy_over(ollama_sim) as proxy, aiohttp.ClientSession() as http:
        for path in ("/api/generate", "/api/chat", "/api/embed", "/api/show", "/api/pull"):
            body = {"model": "llama3.2", "stream": False, "future_field": {"x": 1}, "messages": [], "input": "x"}
            async with http.post(proxy.url + path, json=body) as resp:
                assert resp.status == 200, (path, await resp.text())


async def test_strict_fields_refuses_unknown_fields(ollama_sim) -> None:  # type: ignore[no-untyped-def]
    settings = SecuritySettings(limits=HttpLimits(reject_unknown_fields=True))
    async with (
        proxy_over(ollama_sim, security=settings) as proxy,
        aiohttp.ClientSession() as http,
        http.post(proxy.url + "/api/generate", json={**GEN, "promt": "typo"}) as resp,
    ):
        assert resp.status == 400 and (await resp.json()) == {"error": 'json: unknown field "promt"'}
    assert ollama_sim.requests["/api/generate"] == 0


async def test_body_size_limit_answers_413_before_reading_it_all(ollama_sim) -> None:  # type: ignore[no-untyped-def]
    settings = SecuritySettings(limits=HttpLimits(max_body=1024))
    big = json.dumps({**GEN, "prompt": "x" * 4096}).encode()
    async with proxy_over(ollama_sim, security=settings) as proxy, aiohttp.ClientSession() as http:
        async with http.post(proxy.url + "/api/generate", data=big) as resp:
            assert resp.status == 413 and "too large" in (await resp.json())["error"]

        async def chunked():  # type: ignore[no-untyped-def]  # no Content-Length: the limit holds while reading
            for i in range(0, len(big), 512):
                yield big[i : i + 512]

        async with http.post(proxy.url + "/api/generate", data=chunked()) as resp:
            assert resp.status == 413
        async with http.post(proxy.url + "/api/generate", json=GEN) as resp:
            assert resp.status == 200


async def test_a_body_trickled_slowly_is_cut_off(ollama_sim) -> None:  # type: ignore[no-untyped-def]
    settings = SecuritySettings(limits=HttpLimits(body_timeout=0.5))
    async with proxy_over(ollama_sim, security=settings) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(
            b"POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 5)
        assert b" 408 " in status
        writer.close()


async def test_header_limits_and_unknown_routes(ollama_sim) -> None:  # type: ignore[no-untyped-def]
    async with proxy_over(ollama_sim) as proxy, aiohttp.ClientSession() as http:
        async with http.get(proxy.url + "/api/version", headers={"X-Big": "x" * 20_000}) as resp:
            assert resp.status in (400, 431)  # aiohttp's parser refuses it before any handler runs
        async with http.get(proxy.url + "/api/nothing-here") as resp:
            assert resp.status == 404 and (await resp.json()) == {"error": "404 page not found"}
        async with http.get(proxy.url + "/api/generate") as resp:
            assert resp.status == 405 and "error" in await resp.json()
