"""A small keep-alive HTTP/1.1 client for the inference hot path (generate, chat, embed).

Why not aiohttp's client there: a proxy in front of fast hosts spends about a quarter of its CPU per
request inside it (request and response objects, a URL, a timer, a payload writer, a stream reader
per call). Inference calls need much less: one POST of a JSON body, sent in one write (a large one in
pieces, see `olol.wire.raw.Pieces`), and a reply read either whole or line by line. This does only
that, over a pool of kept-alive connections per host; everything else the Ollama adapter does still
goes through aiohttp.

Reading a reply is llhttp's job (`httptools`, the parser under uvicorn): status line, headers,
bodies framed by Content-Length, by chunked transfer-encoding (extensions and trailers skipped) or by
the connection closing. `Connection: close` and HTTP/1.0 replies are not reused. A connection goes
back to the pool only once its reply was read to the end; a reply abandoned part way (the caller
stopped reading, was cancelled or timed out) closes its connection, which is how the host learns
that the client is gone and stops generating.

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

import httptools

from olol.wire.raw import Pieces

__all__ = ["ConnectionClosed", "HttpPool", "HttpResponse"]

# Reading is paused above this many unread body bytes (a slow client downstream), resumed below the low mark.
_HIGH_WATER = 1 << 20
_LOW_WATER = 1 << 18
# Idle connections kept per host; a burst above this closes the extra ones once it is over.
_MAX_IDLE = 64
# A status line and headers bigger than this are not an Ollama server talking.
_MAX_HEAD = 1 << 16
#: A request body this large is written apart from its head (one copy less; two sends for small ones cost more).
_SEPARATE_BODY = 1 << 20


class ConnectionClosed(ConnectionError):
    """The server closed the connection before the reply was complete."""


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection, its parser, and the reply being read on it.

    The loop feeds bytes to the parser, whose callbacks (`on_*`) fill in the reply: its status and
    headers, then body bytes, then the end. Readers wait on `wait()` for more.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False  # no more bytes will come: EOF, error or closed by us
        self.error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self.write_paused = False  # the transport's buffer is above its high-water mark
        self.begin()

    def begin(self) -> None:
        """Forget the last reply: a request is about to be sent."""
        self.received = 0  # bytes of this reply so far
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.framed = False  # Content-Length or chunked: else the body ends when the connection does
        self.until_close = False
        self.keep_alive = False
        self.body = bytearray()  # decoded body bytes not handed out yet
        self.complete = False
        self.extra = False  # bytes came after the reply: the connection cannot be reused

    # ------------------------------------------------------------------ parser callbacks
    # Kept to what framing needs (headers are decoded only if someone asks): they run for every reply.
    def on_header(self, name: bytes, value: bytes) -> None:
        if self.head_done:  # a trailer
            return
        self.raw_headers.append((name, value))
        key = name.lower()
        if key == b"content-length" or (key == b"transfer-encoding" and b"chunked" in value.lower()):
            self.framed = True

    def on_headers_complete(self) -> None:
        if self.complete:  # a second reply after ours: the connection is out of step
            self.extra = True
            return
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # an interim reply (100 Continue): the real one follows
            self.raw_headers, self.framed = [], False
            return
        self.status = status
        self.head_done = True
        self.keep_alive = self.parser.should_keep_alive()
        self.until_close = not self.framed and status not in (204, 304)

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        if self.head_done:  # else the end of an interim reply
            self.complete = True

    # ------------------------------------------------------------------ loop callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports do not derive from asyncio's classes.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        try:
            self.parser.feed_data(data)
            if not self.head_done and self.received > _MAX_HEAD:
                raise ConnectionClosed("response head too large")
        except (httptools.HttpParserError, ConnectionClosed) as exc:
            self.error = exc if isinstance(exc, ConnectionClosed) else ConnectionClosed(f"malformed reply: {exc}")
            self.close()
        if len(self.body) > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake()

    def eof_received(self) -> bool:
        self._ended(None)
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended(exc)

    def _ended(self, exc: BaseException | None) -> None:
        if self.head_done and self.until_close and self.error is None:
            self.complete = True  # what the parser cannot know: the connection's end is the body's
        self.closed = True
        self.error = self.error or exc
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
            if isinstance(self.error, ConnectionClosed):
                raise self.error
            raise ConnectionClosed(f"connection closed: {self.error}" if self.error else "connection closed")
        waiter = self._waiter = self.loop.create_future()
        await waiter

    def consumed(self) -> None:
        """The reader took bytes out of the body: reading may resume."""
        if self._paused and len(self.body) < _LOW_WATER and self.transport is not None:
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

    def __init__(self, pool: HttpPool, conn: _Connection) -> None:
        self.status = conn.status
        self._raw_headers = conn.raw_headers
        self._pool = pool
        self._conn: _Connection | None = conn

    @property
    def headers(self) -> dict[str, str]:
        """The reply's headers, names lower-cased."""
        return {k.decode("latin-1").lower(): v.decode("latin-1").strip() for k, v in self._raw_headers}

    # ------------------------------------------------------------------ reading
    async def read(self) -> bytes:
        """The rest of the body."""
        conn = self._open()
        while not conn.complete:
            await conn.wait()
        body = bytes(conn.body)
        conn.body.clear()
        conn.consumed()
        return body

    async def readline(self) -> bytes:
        """The next line with its `\\n` (the last one may lack it); b"" once the body is over."""
        conn = self._open()
        body = conn.body
        while True:
            end = body.find(b"\n")
            if end >= 0:
                line = bytes(body[: end + 1])
                del body[: end + 1]
                conn.consumed()
                return line
            if conn.complete:
                line = bytes(body)
                body.clear()
                return line
            await conn.wait()

    def _open(self) -> _Connection:
        if self._conn is None:
            raise ConnectionClosed("response already closed")
        return self._conn

    # ------------------------------------------------------------------ the end
    def close(self) -> None:
        """Give the connection back when the reply was read to its end, else close it. Idempotent."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if conn.complete and conn.keep_alive and not conn.extra and not conn.closed:
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

    async def post(self, path: str, body: bytes | Pieces, content_type: str = "application/json") -> HttpResponse:
        """Send the request and return once the reply's status and headers are in.

        `body` in `Pieces` is written a piece at a time, each once the transport has sent most of
        the last (its flow control), so it is never encoded whole.
        """
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # connections belong to the loop that opened them
            self.close()
            self._loop = loop
        length = body.length if isinstance(body, Pieces) else len(body)
        head = (
            f"POST {self._prefix}{path} HTTP/1.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\n"
        ).encode("latin-1") + self._fixed_headers + b"\r\n"
        # A large body goes in a write of its own: `head + body` would copy it (a proxy holds a large
        # request body decoded already; see olol.security.http).
        large = isinstance(body, Pieces) or len(body) >= _SEPARATE_BODY
        message = head if isinstance(body, Pieces) or large else head + body
        retried = False
        while True:
            conn = None if retried else self._take()
            reused = conn is not None
            if conn is None:
                conn = await self._connect(loop)
            try:
                assert conn.transport is not None
                conn.begin()
                conn.transport.write(message)
                if isinstance(body, Pieces):
                    await _write_pieces(conn, body)
                elif large:
                    conn.transport.write(body)
                while not conn.head_done:
                    await conn.wait()
                return HttpResponse(self, conn)
            except ConnectionClosed:
                self.discard(conn)
                if reused and not conn.received:
                    # Closed while idle, before any byte of this reply: the server's idle timeout, not
                    # this request. Once more, on a fresh connection, so a request that really does
                    # kill connections is not replayed down the whole pool.
                    retried = True
                    continue
                raise
            except BaseException:
                self.discard(conn)
                raise

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


async def _write_pieces(conn: _Connection, pieces: Pieces) -> None:
    """Write `pieces`, waiting while the transport's buffer is full (a piece at a time is held, not the body)."""
    assert conn.transport is not None
    for piece in pieces:
        conn.transport.write(piece)
        while conn.write_paused and not conn.head_done:
            await conn.wait()  # woken by resume_writing (or a reply, or the end of the connection)
        if conn.head_done:
            # Answered before the whole body was sent (an error, say): the rest is not wanted, and the
            # connection, out of step with its request, is not reused.
            conn.keep_alive = False
            return


def _ssl_context(option: ssl_module.SSLContext | bool) -> ssl_module.SSLContext:
    """aiohttp's convention: a context as given, True for the default checks, False for none."""
    if isinstance(option, ssl_module.SSLContext):
        return option
    context = ssl_module.create_default_context()
    if not option:
        context.check_hostname = False
        context.verify_mode = ssl_module.CERT_NONE
    return context
