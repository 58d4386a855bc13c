"""A stable HTTP endpoint in front of the coordinator's current llama-server.

llama-server moves (a new process, a new port) every time the coordinator
re-plans, so clients, and agents registering it as a llama.cpp backend, talk
to this front instead. It forwards any request to the llama-server of the
moment, streaming the response back. A request that fails before any byte of
its response was sent (llama-server died with a worker, or is being replaced;
its headers do not count, as llama-server sends them before computing) waits
for the next generation and is sent again, which is how a worker failure
costs a client a delay rather than an error. A stream cut after its first
bytes ends with an error event (`data: {"error": ...}`, as llama-server words
its own), and any other cut reply with a broken connection, never a clean end
that reads as a complete answer; the OLOL proxy then resumes the answer on the
next generation (olol.proxy.resume). `GET /olol/status` reports the plan and
the tunnels.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp
from aiohttp import web

from olol.errors import BackendUnavailable
from olol.split.coordinator import Coordinator

__all__ = ["DistFront", "status"]

log = logging.getLogger(__name__)

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade", "te", "trailer"}


def status(coordinator: Coordinator) -> dict[str, Any]:
    plan = coordinator.plan
    return {
        "ready": coordinator.ready,
        "generation": coordinator.generation,
        "failures": coordinator.failures[-10:],
        "transport": coordinator.config.transport,
        "model": str(coordinator.config.model),
        "plan": None
        if plan is None
        else {
            "rpc_servers": list(plan.used_addresses),
            "tensor_split": list(plan.tensor_split),
            "objective": plan.plan.objective,
            "estimated_ms_per_token": None if plan.seconds_per_token is None else plan.seconds_per_token * 1e3,
            "assignments": [
                {"host": a.host, "start": a.start, "stop": a.stop, "output": a.output, "memory_bytes": a.memory_bytes}
                for a in plan.plan.assignments
            ],
        },
        "tunnels": {
            address: {"data_path": t.data_path, **vars(t.counters)} for address, t in coordinator.tunnels.items()
        },
    }


class DistFront:
    def __init__(self, coordinator: Coordinator, host: str = "127.0.0.1", port: int = 0, retry_timeout: float = 300.0):
        self.coordinator = coordinator
        self.host = host
        self.port = port
        self.retry_timeout = retry_timeout
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_get("/olol/status", self._status)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        # A client that goes away cancels its handler, and so its request to llama-server (which frees the slot).
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self.host, self.port).start()
        except BaseException:
            await self._runner.cleanup()
            self._runner = None
            raise
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(status(self.coordinator))

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        coordinator = self.coordinator
        for attempt in range(3):
            generation = coordinator.generation
            try:
                if not coordinator.ready:
                    await coordinator.wait_ready(self.retry_timeout)
                    generation = coordinator.generation
                url = coordinator.url + request.path_qs
                upstream = await self._session.request(request.method, url, data=body, headers=headers)
                try:
                    # llama-server sends a stream's headers at once and its first bytes only after the
                    # prompt is processed, which is when a dead worker shows: so the client gets nothing
                    # until the first bytes came, and a failure before them is retried.
                    first = await upstream.content.readany()
                except BaseException:
                    upstream.release()
                    raise
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, BackendUnavailable) as exc:
                log.warning("request %s %s failed on generation %d (%s); retrying", request.method,
                            request.path, generation, exc)  # fmt: skip
                if attempt == 2:
                    break
                await self._next_generation(generation)
                continue
            async with upstream:
                return await self._relay(request, upstream, first)
        return web.json_response({"error": "the distributed model is unavailable (workers failed)"}, status=503)

    async def _relay(self, request: web.Request, upstream: aiohttp.ClientResponse, first: bytes) -> web.StreamResponse:
        """Send the client the response whose first bytes came. Failures here are never the generation's
        to pay for: the client may have gone (a health probe that timed out), or the stream was cut."""
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for key, value in upstream.headers.items():
            if key.lower() not in _HOP_BY_HOP:
                response.headers.add(key, value)
        try:
            await response.prepare(request)
            if first:
                await response.write(first)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
        except (aiohttp.ClientError, ConnectionError) as exc:
            log.warning("response of %s %s cut short: %s", request.method, request.path, exc)
            await _end_cut_short(request, response, upstream, exc)
        return response

    async def _next_generation(self, failed: int) -> None:
        """Wait until a generation after `failed` serves (the coordinator notices deaths within a moment)."""
        coordinator = self.coordinator
        if coordinator.generation == failed and coordinator.ready:
            coordinator.replan(f"a request to generation {failed} failed")
        await coordinator.wait_ready(self.retry_timeout)


async def _end_cut_short(request: web.Request, response: web.StreamResponse, upstream: aiohttp.ClientResponse,
                         exc: BaseException) -> None:
    """Tell the client its reply is incomplete: an SSE error event, else a broken connection."""
    if request.transport is None or request.transport.is_closing():
        return  # the client went away: nobody to tell
    if upstream.content_type == "text/event-stream":
        message = f"the distributed model failed mid-stream (a worker or llama-server died): {exc}"
        event = {"error": {"code": 502, "message": message, "type": "unavailable_error"}}
        try:
            await response.write(b"data: " + json.dumps(event).encode() + b"\n\n")
            await response.write_eof()
            return
        except (ConnectionError, RuntimeError):
            pass
    request.transport.abort()  # no terminating chunk: the client sees a truncated reply, not a whole one
