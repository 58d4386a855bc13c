"""A small keep-alive HTTP/1.1 client for the inference hot path (generate, chat, embed).

Why not aiohttp's client there: a proxy in front of fast hosts spends about a quarter of its CPU per
request inside it (request and response objects, a URL, a timer, a payload writer, a stream reader
per call). Inference calls need much less: one POST of a JSON body, sent in one write, and a reply
read either whole or line by line. This does only that, over a pool of kept-alive connections per
host; everything else the Ollama adapter does still goes through aiohttp.

What it keeps of HTTP/1.1: status line and headers, bodies framed by Content-Length, by chunked
transfer-encoding (trailers skipped) or by the connection closing; `Connection: close` and HTTP/1.0
replies are not reused. A connection goes back to the pool only once its reply was read to the end;
a reply abandoned part way (the caller stopped reading, was cancelled or timed out) closes its
connection, which is how the host learns that the client is gone and stops generating.

A kept-alive connection may have been closed by the server while it sat idle; a request on a reused
connection that ends before any byte of the reply came back is therefore sent once more, on a fresh
connection. Connecting has its own timeout; reading has none here: the caller bounds the whole call.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from collections.abc import Mapping
from typing import cast
from urllib.parse import urlsplit

__all__ = ["ConnectionClosed", "HttpPool", "HttpResponse"]

# Reading is paused above this many unread bytes (a slow client downstream), resumed below the low mark.
_HIGH_WATER = 1 << 20
_LOW_WATER = 1 << 18
# Idle connections kept per host; a burst above this closes the extra ones once it is over.
_MAX_IDLE = 64
# A status line and headers bigger than this are not an Ollama server talking.
_MAX_HEAD = 1 << 16
#: A request body this large is written apart from its head (one copy less; two sends for small ones cost more).
_SEPARATE_BODY = 1 << 20

_LENGTH, _CHUNKED, _UNTIL_CLOSE = 0, 1, 2


class ConnectionClosed(ConnectionError):
    """The server closed the connection before the reply was complete."""


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection: a byte buffer filled by the loop, and a waiter for more."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.closed = False  # no more bytes will come: EOF, error or closed by us
        self.error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False

    # ------------------------------------------------------------------ loop callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports do not derive from asyncio's classes.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.error = exc
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # ------------------------------------------------------------------ used by the client
    async def wait(self) -> None:
        """Return once more bytes arrived; raise `ConnectionClosed` if none ever will."""
        if self.closed:
            raise ConnectionClosed(f"connection closed: {self.error}" if self.error else "connection closed")
        waiter = self._waiter = self.loop.create_future()
        await waiter

    def consumed(self) -> None:
        """The reader took bytes out of the buffer: reading may resume."""
        if self._paused and len(self.buffer) < _LOW_WATER and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class HttpResponse:
    """A reply being read: `status` and `headers` now, the body with `read()` or `readline()`.

    `close()` must be called when done with it (the client does so in a `finally`): it returns the
    connection to its pool when the body was read to the end, and closes it otherwise.
    """

    def __init__(self, pool: HttpPool, conn: _Connection, status: int, headers: dict[str, str],
                 framing: int, length: int, keep_alive: bool) -> None:
        self.status = status
        self.headers = headers
        self._pool = pool
        self._conn: _Connection | None = conn
        self._framing = framing
        # Content-Length: bytes still to come; chunked: bytes left in the current chunk (-1: a size line next).
        self._left = length
        self._keep_alive = keep_alive
        self._body = bytearray()  # decoded body bytes not handed out yet
        self._complete = framing == _LENGTH and length == 0

    # ------------------------------------------------------------------ reading
    async def read(self) -> bytes:
        """The rest of the body."""
        while not self._complete:
            await self._fill()
        body = bytes(self._body)
        self._body.clear()
        return body

    async def readline(self) -> bytes:
        """The next line with its `\\n` (the last one may lack it); b"" once the body is over."""
        while True:
            end = self._body.find(b"\n")
            if end >= 0:
                line = bytes(self._body[: end + 1])
                del self._body[: end + 1]
                return line
            if self._complete:
                line = bytes(self._body)
                self._body.clear()
                return line
            await self._fill()

    async def _fill(self) -> None:
        """Decode what the connection holds into the body; wait for more when that was nothing."""
        conn = self._conn
        if conn is None:
            raise ConnectionClosed("response already closed")
        if not self._decode(conn.buffer):
            if conn.closed and self._framing == _UNTIL_CLOSE:
                self._complete = True
                return
            await conn.wait()
            self._decode(conn.buffer)
        conn.consumed()

    def _decode(self, buf: bytearray) -> bool:
        """Move framed body bytes from `buf` into the body; whether anything moved or completed."""
        if self._framing == _LENGTH:
            take = min(self._left, len(buf))
            if not take:
                return False
            self._body += buf[:take]
            del buf[:take]
            self._left -= take
            self._complete = self._left == 0
            return True
        if self._framing == _UNTIL_CLOSE:
            if not buf:
                return False
            self._body += buf
            buf.clear()
            return True
        return self._decode_chunks(buf)

    def _decode_chunks(self, buf: bytearray) -> bool:
        progressed = False
        while buf and not self._complete:
            if self._left > 0:  # inside a chunk's data
                take = min(self._left, len(buf))
                self._body += buf[:take]
                del buf[:take]
                self._left -= take
                progressed = True
                if self._left == 0:
                    self._left = -2  # its CRLF next
                continue
            if self._left == -2:
                if len(buf) < 2:
                    break
                if buf[:2] != b"\r\n":
                    raise ConnectionClosed("malformed chunked body")
                del buf[:2]
                self._left = -1
                continue
            end = buf.find(b"\r\n")
            if end < 0:
                if len(buf) > _MAX_HEAD:
                    raise ConnectionClosed("malformed chunked body")
                break
            if self._left == -3:  # trailers after the last chunk, up to an empty line
                del buf[: end + 2]
                if end == 0:
                    self._complete = True
                    progressed = True
                continue
            size_field = bytes(buf[:end]).split(b";", 1)[0].strip()
            try:
                size = int(size_field, 16)
            except ValueError:
                raise ConnectionClosed(f"malformed chunk size {size_field[:20]!r}") from None
            del buf[: end + 2]
            self._left = size if size else -3
        return progressed

    # ------------------------------------------------------------------ the end
    def close(self) -> None:
        """Give the connection back when the reply was read to its end, else close it. Idempotent."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._complete and self._keep_alive and not conn.buffer and not conn.closed:
            self._pool.release(conn)
        else:
            self._pool.discard(conn)


class HttpPool:
    """Kept-alive connections to one server, and the request that uses them."""

    def __init__(self, url: str, *, headers: Mapping[str, str] | None = None,
                 ssl: ssl_module.SSLContext | bool = True, connect_timeout: float = 5.0) -> None:
        parts = urlsplit(url if "://" in url else "http://" + url)
        secure = parts.scheme == "https"
        if not parts.hostname:
            raise ValueError(f"no host in {url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if secure else 80)
        self._prefix = parts.path.rstrip("/")
        self._ssl: ssl_module.SSLContext | None = _ssl_context(ssl) if secure else None
        self._connect_timeout = connect_timeout
        default_port = 443 if secure else 80
        authority = self.host if ":" not in self.host else f"[{self.host}]"
        if self.port != default_port:
            authority += f":{self.port}"
        fixed = {"Host": authority, "Accept": "*/*", **(headers or {})}
        self._fixed_headers = "".join(f"{k}: {v}\r\n" for k, v in fixed.items()).encode("latin-1")
        self._idle: list[_Connection] = []
        self._live: set[_Connection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def post(self, path: str, body: bytes, content_type: str = "application/json") -> HttpResponse:
        """Send the request and return once the reply's status and headers are in."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # connections belong to the loop that opened them
            self.close()
            self._loop = loop
        head = (
            f"POST {self._prefix}{path} HTTP/1.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
        ).encode("latin-1") + self._fixed_headers + b"\r\n"
        # A large body goes in a write of its own: `head + body` would copy it (a proxy holds a large
        # request body once decoded and once encoded already; see olol.security.http).
        large = len(body) >= _SEPARATE_BODY
        message = head if large else head + body
        retried = False
        while True:
            conn = None if retried else self._take()
            reused = conn is not None
            if conn is None:
                conn = await self._connect(loop)
            try:
                assert conn.transport is not None
                conn.transport.write(message)
                if large:
                    conn.transport.write(body)
                return await self._read_head(conn)
            except ConnectionClosed:
                self.discard(conn)
                if reused and not conn.buffer:
                    # Closed while idle, before any byte of this reply: the server's idle timeout, not
                    # this request. Once more, on a fresh connection, so a request that really does
                    # kill connections is not replayed down the whole pool.
                    retried = True
                    continue
                raise
            except BaseException:
                self.discard(conn)
                raise

    async def _read_head(self, conn: _Connection) -> HttpResponse:
        buf = conn.buffer
        while True:
            end = buf.find(b"\r\n\r\n")
            while end < 0:
                if len(buf) > _MAX_HEAD:
                    raise ConnectionClosed("response head too large")
                await conn.wait()
                end = buf.find(b"\r\n\r\n")
            head = bytes(buf[:end]).decode("latin-1")
            del buf[: end + 4]
            lines = head.split("\r\n")
            version, _, rest = lines[0].partition(" ")
            try:
                status = int(rest[:3])
            except ValueError:
                raise ConnectionClosed(f"malformed status line {lines[0][:40]!r}") from None
            if 100 <= status < 200:
                continue  # an interim reply (100 Continue): the real one follows
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            return self._response(conn, version, status, headers)

    def _response(self, conn: _Connection, version: str, status: int, headers: dict[str, str]) -> HttpResponse:
        connection = headers.get("connection", "").lower()
        keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return HttpResponse(self, conn, status, headers, _CHUNKED, -1, keep_alive)
        if status in (204, 304):
            return HttpResponse(self, conn, status, headers, _LENGTH, 0, keep_alive)
        length = headers.get("content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                raise ConnectionClosed(f"malformed Content-Length {length[:20]!r}") from None
            return HttpResponse(self, conn, status, headers, _LENGTH, size, keep_alive)
        return HttpResponse(self, conn, status, headers, _UNTIL_CLOSE, 0, False)

    # ------------------------------------------------------------------ the pool
    def _take(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()  # the most recently used: warm, and least likely to have timed out
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                return conn
            self.discard(conn)
        return None

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(loop), self.host, self.port, ssl=self._ssl,
                    server_hostname=self.host if self._ssl is not None else None)
        except TimeoutError:
            raise ConnectionClosed(f"connecting to {self.host}:{self.port} timed out") from None
        self._live.add(conn)
        return conn

    def release(self, conn: _Connection) -> None:
        if len(self._idle) < _MAX_IDLE and conn.loop is self._loop:
            self._idle.append(conn)
        else:
            self.discard(conn)

    def discard(self, conn: _Connection) -> None:
        self._live.discard(conn)
        conn.close()

    def close(self) -> None:
        """Close every connection, idle or in use (replies being read then fail)."""
        self._idle.clear()
        for conn in list(self._live):
            self.discard(conn)


def _ssl_context(option: ssl_module.SSLContext | bool) -> ssl_module.SSLContext:
    """aiohttp's convention: a context as given, True for the default checks, False for none."""
    if isinstance(option, ssl_module.SSLContext):
        return option
    context = ssl_module.create_default_context()
    if not option:
        context.check_hostname = False
        context.verify_mode = ssl_module.CERT_NONE
    return context
