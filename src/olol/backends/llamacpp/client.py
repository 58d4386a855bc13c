"""HTTP to one llama-server: JSON calls and SSE streams, failures as OlolErrors.

The mapping of llama-server's answers to OLOL errors lives here, once:
connection refused / reset / cut mid-stream -> BackendUnavailable, 400 ->
BadRequest (with llama.cpp's own message), 404/501 -> Unsupported, 503 (loading,
no free slot) -> Busy, anything else -> a 5xx OlolError.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

import aiohttp

from olol.cluster.backend import JSON
from olol.errors import BackendUnavailable, BadRequest, Busy, OlolError, Unsupported

__all__ = ["LlamaServerClient", "http_error"]

_TRANSPORT_ERRORS = (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, ConnectionError, TimeoutError)


def http_error(status: int, body: Any) -> OlolError:
    """An error answer of llama-server (`{"error": {"code", "message", "type"}}`) as an OlolError."""
    error = body.get("error", body) if isinstance(body, dict) else body
    message = str(error.get("message", error)) if isinstance(error, dict) else str(error)
    if status == 400:
        return BadRequest(message)
    if status in (404, 501):
        return Unsupported(message)
    if status == 503:
        return Busy(message or "llama-server is busy")
    return OlolError(message, status=status if status >= 500 else 500)


async def _lines(stream: aiohttp.StreamReader) -> AsyncGenerator[bytes, None]:
    """Lines of any length (aiohttp's readline() refuses lines over 64 KiB, and one
    SSE event can be longer: a big tool call, an echoed prompt)."""
    pending: list[bytes] = []
    async for chunk in stream.iter_any():
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            pending.append(chunk[start:end])
            yield b"".join(pending).strip()
            pending.clear()
            start = end + 1
        pending.append(chunk[start:])
    if tail := b"".join(pending).strip():
        yield tail


class LlamaServerClient:
    """`base_url` is a callable because a supervised server may come back on a new port."""

    def __init__(
        self,
        base_url: Callable[[], str],
        *,
        connect_timeout: float = 10.0,
        diagnose: Callable[[], str] = lambda: "",
    ) -> None:
        self.base_url = base_url
        self._diagnose = diagnose  # extra context for failures, e.g. the server's log tail
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout)
        self._session: aiohttp.ClientSession | None = None

    @property
    def is_open(self) -> bool:
        return self._session is not None and not self._session.closed

    async def open(self) -> None:
        if not self.is_open:
            # No keep-alive: llama-server closes a connection after a stream, and a
            # pooled socket to a restarted server is dead; on loopback a fresh
            # connection per request costs far less than a spurious failure.
            connector = aiohttp.TCPConnector(force_close=True)
            self._session = aiohttp.ClientSession(timeout=self._timeout, connector=connector)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def unavailable(self, exc: BaseException, during: str = "is unreachable") -> BackendUnavailable:
        try:
            where = self.base_url()
        except OlolError:
            where = "(not running)"
        message = f"llama-server {during}: {str(exc) or type(exc).__name__} [{where}]"
        if extra := self._diagnose():
            message += f"\n{extra}"
        return BackendUnavailable(message)

    @contextlib.asynccontextmanager
    async def response(self, method: str, path: str, body: JSON | None = None) -> AsyncIterator[Any]:
        """A successful (< 400) response; closed, never pooled, on exit."""
        await self.open()
        assert self._session is not None
        try:
            resp = await self._session.request(method, self.base_url() + path, json=body)
        except _TRANSPORT_ERRORS as exc:
            raise self.unavailable(exc) from exc
        try:
            if resp.status >= 400:
                text = await resp.text()
                try:
                    parsed: Any = json.loads(text)
                except json.JSONDecodeError:
                    parsed = text
                raise http_error(resp.status, parsed)
            yield resp
        finally:
            # Closing an unfinished stream is what tells llama-server the client
            # left, so it stops generating and frees the slot.
            resp.close()

    async def json(self, method: str, path: str, body: JSON | None = None) -> Any:
        async with self.response(method, path, body) as resp:
            try:
                return await resp.json(content_type=None)
            except _TRANSPORT_ERRORS as exc:
                raise self.unavailable(exc, "failed mid-response") from exc

    async def events(self, path: str, body: JSON) -> AsyncGenerator[JSON, None]:
        """POST and yield the `data:` events of the SSE answer, up to `[DONE]` or EOF.

        Close it with `contextlib.aclosing` so an abandoned stream is cut at once.
        """
        async with self.response("POST", path, body) as resp:
            try:
                async for line in _lines(resp.content):
                    if not line.startswith(b"data:"):
                        continue  # blank separators and ": ping" comments
                    payload = line[5:].strip()
                    if payload == b"[DONE]":
                        return
                    event = json.loads(payload)
                    if isinstance(event, dict) and "error" in event:
                        error = event["error"]  # an error after the stream started
                        raise http_error(int(error.get("code", 500)) if isinstance(error, dict) else 500, event)
                    yield event
            except _TRANSPORT_ERRORS as exc:
                raise self.unavailable(exc, "stopped mid-stream") from exc

    def cut_short(self) -> BackendUnavailable:
        """For a stream that ended cleanly but without its final event."""
        return self.unavailable(EOFError("stream ended before the final chunk"), "stopped mid-stream")
