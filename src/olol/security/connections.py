"""The proxy's HTTP connections: a cap per client address, and Ollama-shaped errors from the parser.

aiohttp answers what its HTTP parser refuses (a bad header, an invalid method, a
URL with raw non-ASCII bytes) before any middleware runs, in plain text; Ollama's
clients read `{"error": ...}`. And it accepts connections without limit, so one
client holding a thousand idle connections takes every file descriptor the
proxy has. Both live in aiohttp's per-connection protocol object, so this module
gives the proxy's `web.Server` a subclass that makes those (`install`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

__all__ = ["install"]

log = logging.getLogger("olol.security")


def _peer(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer or "")


class _GuardedHandler(RequestHandler):
    __slots__ = ()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        server = self._manager
        if not isinstance(server, _GuardedServer):
            return
        peer = _peer(transport)
        server.per_peer[peer] += 1
        if server.per_peer[peer] > server.max_per_client:
            log.debug("refused a connection from %s: %d open already", peer, server.max_per_client)
            transport.close()  # before anything was read: connection_lost follows and gives the count back

    def connection_lost(self, exc: BaseException | None) -> None:
        server, transport = self._manager, self.transport
        super().connection_lost(exc)
        if isinstance(server, _GuardedServer) and transport is not None:
            peer = _peer(transport)
            server.per_peer[peer] -= 1
            if server.per_peer[peer] <= 0:
                del server.per_peer[peer]

    def handle_error(
        self, request: BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs, and raises if a reply was started already
        detail = exc.message if isinstance(exc, HttpProcessingError) and exc.message else message
        phrase = HTTPStatus(status).phrase.lower() if status in HTTPStatus._value2member_map_ else "error"
        first = str(detail).strip().splitlines()[0].rstrip(":") if detail and status != 500 else ""
        reply = web.Response(
            status=status,
            body=json.dumps({"error": f"{phrase}: {first}" if first else phrase}).encode(),
            content_type="application/json",
        )
        reply.force_close()
        return reply


class _GuardedServer(web.Server):
    per_peer: Counter[str]
    max_per_client: int

    def __call__(self) -> RequestHandler:
        return _GuardedHandler(self, loop=self._loop, **self._kwargs)


def install(server: Any, max_per_client: int) -> None:
    """Make `server` (an AppRunner's `web.Server`, before its site starts) cap and shape its connections."""
    if not isinstance(server, web.Server):
        raise TypeError(f"expected aiohttp's web.Server, got {type(server).__name__}")
    server.__class__ = _GuardedServer
    guarded: _GuardedServer = server  # type: ignore[assignment]  # what the line above made it
    guarded.per_peer = Counter()
    guarded.max_per_client = max_per_client
