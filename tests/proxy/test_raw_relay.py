"""A host's NDJSON lines and whole replies are relayed byte for byte when nothing needs changing.

The proxy still decodes each line (routing and metrics read `done` and the final stats) but sends
the bytes it received rather than encoding the object again. A line anything changed is encoded
afresh, and replies the proxy builds itself (a folded stream) are its own encoding.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from olol.proxy.aggregate import collect_chat, collect_generate
from olol.proxy.http.io import json_reply
from olol.wire.raw import RawChunk, raw_bytes
from tests.proxy.helpers import proxy_over

# Valid JSON an encoder of the proxy's would never write: spaces, escaped non-ASCII, key order.
LINES = [
    b'{"response": "caf\\u00e9 ", "model": "llama3.2", "done": false}',
    b'{"response": "", "model": "llama3.2", "done": true, "done_reason": "stop", "eval_count": 1,'
    b' "eval_duration": 1000}',
]
WHOLE = b'{ "model" : "llama3.2", "response" : "caf\\u00e9", "done" : true, "eval_count" : 1 }'


@contextlib.asynccontextmanager
async def odd_host(received: list[bytes] | None = None) -> AsyncIterator[str]:
    """Just enough of an Ollama host for the proxy to probe it and send it generations (kept in `received`)."""

    async def version(_r: web.Request) -> web.Response:
        return web.json_response({"version": "0.9.0"})

    async def tags(_r: web.Request) -> web.Response:
        return web.json_response({"models": [{"name": "llama3.2:latest", "model": "llama3.2:latest"}]})

    async def ps(_r: web.Request) -> web.Response:
        return web.json_response({"models": [{"name": "llama3.2:latest", "model": "llama3.2:latest"}]})

    async def generate(request: web.Request) -> web.StreamResponse:
        if received is not None:
            received.append(await request.read())
        if (await request.json()).get("stream") is False:
            return web.Response(body=WHOLE, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        for line in LINES:
            await response.write(line + b"\n")
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/api/version", version)
    app.router.add_get("/api/tags", tags)
    app.router.add_get("/api/ps", ps)
    app.router.add_post("/api/generate", generate)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_stream_lines_and_whole_replies_are_relayed_as_the_host_sent_them() -> None:
    async with odd_host() as url, proxy_over(url, first_byte_timeout=None) as proxy, \
            aiohttp.ClientSession() as http:
        async with http.post(proxy.url + "/api/generate", json={"model": "llama3.2", "prompt": "x"}) as resp:
            assert resp.status == 200
            assert await resp.read() == b"".join(line + b"\n" for line in LINES)
        # Without a first-byte timeout a `stream: false` call is passed on as such: one whole object.
        body = {"model": "llama3.2", "prompt": "x", "stream": False}
        async with http.post(proxy.url + "/api/generate", json=body) as resp:
            assert resp.status == 200 and resp.headers["X-OLOL-Host"] == url
            assert await resp.read() == WHOLE


async def test_a_request_body_nothing_changes_goes_upstream_as_the_client_sent_it() -> None:
    received: list[bytes] = []
    sent = [b'{"model": "llama3.2", "prompt": "caf\\u00e9", "stream": true}',
            b'{ "prompt" : "x", "model" : "llama3.2" }']  # no `stream`: Ollama's default (streaming) holds
    async with odd_host(received) as url, proxy_over(url) as proxy, aiohttp.ClientSession() as http:
        for body in sent:
            async with http.post(proxy.url + "/api/generate", data=body,
                                 headers={"Content-Type": "application/json"}) as resp:
                assert resp.status == 200
                assert await resp.read() == b"".join(line + b"\n" for line in LINES)
    assert received == sent


@pytest.mark.parametrize("change", [
    lambda c: c.__setitem__("model", "other"),
    lambda c: c.__delitem__("done"),
    lambda c: c.update(model="other"),
    lambda c: c.pop("done"),
    lambda c: c.popitem(),
    lambda c: c.setdefault("new", 1),
    lambda c: c.clear(),
    lambda c: c.__ior__({"model": "other"}),
])
def test_any_change_drops_the_bytes(change) -> None:  # type: ignore[no-untyped-def]
    chunk = RawChunk.parse(LINES[0] + b"\n")
    assert raw_bytes(chunk) == LINES[0] and chunk == {"response": "café ", "model": "llama3.2", "done": False}
    change(chunk)
    assert raw_bytes(chunk) is None
    assert json_reply(chunk).body != LINES[0]


def test_plain_objects_and_copies_have_no_bytes() -> None:
    chunk = RawChunk.parse(WHOLE)
    assert raw_bytes({**chunk}) is None and raw_bytes(dict(chunk)) is None
    assert json_reply(chunk).body == WHOLE
    with pytest.raises(ValueError):
        RawChunk.parse(b"[1, 2]")


async def _chunks(*lines: bytes) -> AsyncIterator[RawChunk]:
    for line in lines:
        yield RawChunk.parse(line)


async def test_a_whole_reply_is_the_reply_and_a_stream_is_folded() -> None:
    whole = await collect_generate(_chunks(WHOLE))
    assert raw_bytes(whole) == WHOLE
    folded = await collect_generate(_chunks(*LINES))
    assert raw_bytes(folded) is None and folded["response"] == "café " and folded["done"] is True
    chat = b'{"message": {"role": "assistant", "content": "hi", "tool_name": "t"}, "done": true}'
    assert raw_bytes(await collect_chat(_chunks(chat))) == chat
