"""`olol dist`'s endpoint when llama-server dies mid-reply: an error event (or a broken reply), never a clean end."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from olol.split.front import DistFront


class OneServerCoordinator:
    """Just what the front asks of a coordinator: where llama-server is, and that it is ready."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ready = True
        self.generation = 1

    async def wait_ready(self, timeout: float) -> None:
        return None

    def replan(self, reason: str) -> None:
        raise AssertionError("nothing failed before the first byte")


async def _dying_llama_server(content_type: str) -> web.AppRunner:
    """Sends its headers and two pieces of a reply, then its connection breaks (a worker died)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": content_type})
        await response.prepare(request)
        await response.write(b'data: {"content":"Once"}\n\n' if content_type == "text/event-stream" else b'{"con')
        await response.write(b'data: {"content":" upon"}\n\n' if content_type == "text/event-stream" else b'tent"')
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.abort()
        return response

    app = web.Application()
    app.router.add_post("/completion", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


@pytest.mark.parametrize("content_type", ["text/event-stream", "application/json"])
async def test_a_reply_cut_mid_stream_is_never_a_clean_end(content_type: str) -> None:
    runner = await _dying_llama_server(content_type)
    port = runner.addresses[0][1]
    front = DistFront(OneServerCoordinator(f"http://127.0.0.1:{port}"))  # type: ignore[arg-type]
    await front.start()
    try:
        async with aiohttp.ClientSession() as http, http.post(front.url + "/completion", json={}) as resp:
            assert resp.status == 200
            if content_type != "text/event-stream":
                with pytest.raises(aiohttp.ClientPayloadError):
                    await resp.read()
                return
            body = (await asyncio.wait_for(resp.read(), 5)).decode()
    finally:
        await front.close()
        await runner.cleanup()
    events: list[Any] = [line for line in body.split("\n\n") if line]
    assert events[:2] == ['data: {"content":"Once"}', 'data: {"content":" upon"}']
    assert events[2].startswith('data: {"error": {"code": 502') and "mid-stream" in events[2]
