"""Names and paths a client controls never leave the shape Ollama gives them (issue 20).

On d9d1e00 `HEAD /api/blobs/..%2F..%2Fapi%2Ftags` reached hosts as `HEAD /api/tags`,
`/api/copy` forwarded a destination of `../../etc/passwd`, and a blob upload spooled
any size with no time limit before it looked at the digest.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator

import aiohttp

from olol.security.limits import HttpLimits
from olol.security.settings import SecuritySettings
from tests.proxy.helpers import proxy_over
from tests.support.ollama_sim import OllamaSim

MODEL = "llama3.2"


def limited(**limits: float) -> SecuritySettings:
    return SecuritySettings(limits=HttpLimits(**limits))  # type: ignore[arg-type]


async def test_a_blob_path_never_escapes_api_blobs() -> None:
    # No health probes during the test (they would reach the sim too): only what the requests cause counts.
    async with OllamaSim() as sim, proxy_over(sim, probe_interval=60.0) as proxy, aiohttp.ClientSession() as http:
        for path in ("/api/blobs/..%2F..%2Fapi%2Ftags", "/api/blobs/sha256:..%2F..%2Fx", "/api/blobs/x"):
            before = dict(sim.requests)
            async with http.head(proxy.url + path) as r:
                assert r.status == 400, path
            async with http.post(proxy.url + path, data=b"x") as r:
                assert r.status == 400, path
                assert await r.json() == {"error": "invalid digest format"}
            assert sim.requests["/api/blobs/{digest}"] == 0, path
            assert sim.requests["/api/tags"] == before.get("/api/tags", 0), path


async def test_a_blob_with_a_bad_digest_is_refused_before_its_body_is_read() -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while sent < 256 << 20:  # the proxy answers long before this
            sent += 1 << 20
            yield b"\0" * (1 << 20)

    async with OllamaSim() as sim, proxy_over(sim) as proxy, aiohttp.ClientSession() as http:
        try:
            async with http.post(proxy.url + "/api/blobs/not-a-digest", data=endless()) as r:
                assert r.status == 400
        except aiohttp.ClientError:
            pass  # the proxy may close the connection on an unread body: just as good
        assert sent < 256 << 20


async def test_a_blob_over_the_size_limit_is_a_413() -> None:
    data = b"x" * 4096
    digest = "sha256:" + hashlib.sha256(data).hexdigest()

    async def chunked() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 1024):
            yield data[i : i + 1024]

    async with OllamaSim() as sim, proxy_over(sim, security=limited(max_blob=1000)) as proxy:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{proxy.url}/api/blobs/{digest}", data=data) as r:
                assert r.status == 413, await r.text()  # announced by Content-Length
            async with http.post(f"{proxy.url}/api/blobs/{digest}", data=chunked()) as r:
                assert r.status == 413, await r.text()  # counted as it comes
        assert sim.requests["/api/blobs/{digest}"] == 0


async def test_a_blob_upload_that_goes_quiet_is_dropped() -> None:
    release = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        yield b"x"
        await release.wait()  # a client that stops sending, connection open
        yield b"y"

    digest = "sha256:" + hashlib.sha256(b"xy").hexdigest()
    async with OllamaSim() as sim, proxy_over(sim, security=limited(blob_idle_timeout=0.3)) as proxy:
        async with aiohttp.ClientSession() as http:
            upload = asyncio.ensure_future(http.post(f"{proxy.url}/api/blobs/{digest}", data=stalls()))
            try:
                response = await asyncio.wait_for(asyncio.shield(upload), 10)
                assert response.status == 408
                response.release()
            except aiohttp.ClientError:
                pass  # closed under the client while it still holds its body: dropped as well
            finally:
                release.set()
                await asyncio.gather(upload, return_exceptions=True)
        assert sim.requests["/api/blobs/{digest}"] == 0


async def test_copy_and_delete_check_names_as_ollama_does() -> None:
    async with OllamaSim() as sim, proxy_over(sim) as proxy, aiohttp.ClientSession() as http:
        body = {"source": MODEL, "destination": "../../etc/passwd"}
        async with http.post(proxy.url + "/api/copy", data=json.dumps(body)) as r:
            assert (r.status, await r.json()) == (400, {"error": 'destination "../../etc/passwd" is invalid'})
        async with http.post(proxy.url + "/api/copy", json={"source": "a/b/c/d", "destination": "x"}) as r:
            assert (r.status, await r.json()) == (400, {"error": 'source "a/b/c/d" is invalid'})
        async with http.delete(proxy.url + "/api/delete", json={"model": "../x"}) as r:
            assert (r.status, await r.json()) == (400, {"error": 'name "../x" is invalid'})
        async with http.post(proxy.url + "/api/generate", json={"model": "../x", "prompt": "hi"}) as r:
            assert (r.status, await r.json()) == (404, {"error": "model '../x' not found"})
        assert sim.requests["/api/copy"] == sim.requests["/api/delete"] == sim.requests["/api/generate"] == 0


async def _raw_exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def test_a_session_header_that_is_not_utf8_is_just_another_session() -> None:
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False}).encode()
    async with OllamaSim() as sim, proxy_over(sim) as proxy:
        head = b"POST /api/chat HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-OLOL-Session: a\xff\xfeb\r\n"
        reply = await _raw_exchange(proxy.port, head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        assert reply.startswith(b"HTTP/1.1 200 "), reply[:200]
        get = b"GET /api/sessions/%FF%FE HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        reply = await _raw_exchange(proxy.port, get)
        assert reply.split(b"\r\n", 1)[0] in (b"HTTP/1.1 404 Not Found", b"HTTP/1.1 501 Not Implemented"), reply[:200]
