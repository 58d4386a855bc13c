"""The lean HTTP/1.1 client under the Ollama adapter's inference calls, against a scripted raw server.

Each test scripts the server's bytes exactly (framing, closes, stalls), because what matters is
how the client copes with what real servers do: chunk boundaries anywhere, kept-alive connections
closed while idle, replies abandoned part way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from olol.backends.ollama._http1 import ConnectionClosed, HttpPool
from olol.backends.ollama.backend import OllamaBackend
from olol.errors import BackendUnavailable, ModelNotFound

Reply = Callable[["Conn", bytes], Awaitable[bool]]  # writes the reply; False closes the connection


@dataclass
class Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def send(self, data: bytes) -> None:
        self.writer.write(data)


@dataclass
class Server:
    """Reads requests (head + Content-Length body) and answers each with the next scripted reply."""

    replies: list[Reply]
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    closed_by_client: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = Conn(reader, writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    self.closed_by_client.set()
                    return
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                if not await self.replies.pop(0)(conn, body):
                    return
                await writer.drain()
        finally:
            writer.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def serving(*replies: Reply) -> AsyncIterator[Server]:
    server = Server(list(replies))
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()


def fixed(status: int, body: bytes, *headers: str) -> Reply:
    async def reply(conn: Conn, _request: bytes) -> bool:
        extra = "".join(f"{h}\r\n" for h in headers)
        conn.send(f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body)
        return "Connection: close" not in headers
    return reply


def chunked(*pieces: bytes, trailer: bytes = b"") -> Reply:
    async def reply(conn: Conn, _request: bytes) -> bool:
        conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/x-ndjson\r\n\r\n")
        for piece in pieces:
            conn.send(piece)
            await conn.writer.drain()
        conn.send(b"0\r\n" + trailer + b"\r\n")
        return True
    return reply


def hang_up() -> Reply:
    async def reply(conn: Conn, _request: bytes) -> bool:
        return False  # read the request, answer nothing, close
    return reply


async def lines(pool: HttpPool, body: bytes = b"{}") -> list[bytes]:
    resp = await pool.post("/api/generate", body)
    try:
        out = []
        while line := await resp.readline():
            out.append(line)
        return out
    finally:
        resp.close()


async def test_chunked_lines_split_anywhere_with_extensions_and_trailers() -> None:
    # Chunk boundaries fall mid-line and mid-CRLF; a chunk extension and a trailer are ignored.
    async with serving(chunked(b"5;ext=1\r\n{\"a\":\r\n", b"3\r", b"\n1}\n\r\n8\r\n{\"b\":2}\n\r\n",
                               trailer=b"X-Trailer: 1\r\n")) as server:
        pool = HttpPool(server.url)
        assert await lines(pool) == [b'{"a":1}\n', b'{"b":2}\n']
        pool.close()


async def test_kept_alive_connection_is_reused_and_the_request_is_one_write() -> None:
    async with serving(fixed(200, b'{"x":1}'), chunked(b"4\r\n{}\n\n\r\n")) as server:
        pool = HttpPool(server.url, headers={"Authorization": "Bearer k"})
        resp = await pool.post("/api/embed", b'{"model":"m"}')
        assert (resp.status, await resp.read()) == (200, b'{"x":1}')
        resp.close()
        assert await lines(pool) == [b"{}\n", b"\n"]
        assert server.connections == 1
        first = server.requests[0]
        assert first.startswith(b"POST /api/embed HTTP/1.1\r\n")
        assert b"\r\nAuthorization: Bearer k\r\n" in first and first.endswith(b'\r\n\r\n{"model":"m"}')
        assert b"\r\nHost: 127.0.0.1:" in first
        pool.close()


async def test_idle_connection_closed_by_the_server_is_retried_on_a_fresh_one() -> None:
    # The first connection answers once and then hangs up on the next request without a byte: what a
    # server's idle timeout looks like from here. The request goes again on a new connection.
    async with serving(fixed(200, b"1"), hang_up(), fixed(200, b"2")) as server:
        pool = HttpPool(server.url)
        for expected in (b"1", b"2"):
            resp = await pool.post("/api/generate", b"{}")
            assert await resp.read() == expected
            resp.close()
        assert server.connections == 2 and len(server.requests) == 3
        pool.close()


async def test_a_fresh_connection_failing_is_not_retried() -> None:
    async with serving(hang_up(), fixed(200, b"never")) as server:
        pool = HttpPool(server.url)
        with pytest.raises(ConnectionClosed):
            await pool.post("/api/generate", b"{}")
        assert len(server.requests) == 1
        pool.close()


async def test_reused_connection_is_retried_once_only() -> None:
    async with serving(fixed(200, b"1"), hang_up(), hang_up(), fixed(200, b"never")) as server:
        pool = HttpPool(server.url)
        resp = await pool.post("/api/generate", b"{}")
        await resp.read()
        resp.close()
        with pytest.raises(ConnectionClosed):
            await pool.post("/api/generate", b"{}")
        assert len(server.requests) == 3
        pool.close()


async def test_abandoned_reply_closes_its_connection_so_the_server_stops() -> None:
    release = asyncio.Event()

    async def endless(conn: Conn, _request: bytes) -> bool:
        conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{}\n\r\n")
        await release.wait()
        return True

    async with serving(endless, fixed(200, b"ok")) as server:
        pool = HttpPool(server.url)
        resp = await pool.post("/api/generate", b"{}")
        assert await resp.readline() == b"{}\n"
        resp.close()  # the caller stopped reading
        release.set()
        await asyncio.wait_for(server.closed_by_client.wait(), 5)
        resp = await pool.post("/api/generate", b"{}")
        assert await resp.read() == b"ok"
        resp.close()
        assert server.connections == 2
        pool.close()


async def test_cancelled_while_waiting_for_the_reply_closes_the_connection() -> None:
    never, asked = asyncio.Event(), asyncio.Event()

    async def silent(_conn: Conn, _request: bytes) -> bool:
        asked.set()
        await never.wait()
        return True

    async with serving(silent) as server:
        pool = HttpPool(server.url)
        task = asyncio.create_task(pool.post("/api/generate", b"{}"))
        await asked.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        never.set()
        await asyncio.wait_for(server.closed_by_client.wait(), 5)
        pool.close()


async def test_connection_close_and_close_delimited_replies_are_not_reused() -> None:
    async def until_close(conn: Conn, _request: bytes) -> bool:
        conn.send(b"HTTP/1.0 200 OK\r\n\r\n{\"a\":1}\n{\"b\":2}")
        return False

    async with serving(fixed(200, b"x", "Connection: close"), until_close, fixed(200, b"y")) as server:
        pool = HttpPool(server.url)
        resp = await pool.post("/api/generate", b"{}")
        assert await resp.read() == b"x"
        resp.close()
        assert await lines(pool) == [b'{"a":1}\n', b'{"b":2}']
        resp = await pool.post("/api/generate", b"{}")
        assert await resp.read() == b"y"
        resp.close()
        assert server.connections == 3
        pool.close()


async def test_body_cut_short_raises() -> None:
    async def short(conn: Conn, _request: bytes) -> bool:
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345")
        return False

    async with serving(short) as server:
        pool = HttpPool(server.url)
        resp = await pool.post("/api/generate", b"{}")
        with pytest.raises(ConnectionClosed):
            await resp.read()
        resp.close()
        pool.close()


async def test_interim_reply_is_skipped_and_a_malformed_one_raises() -> None:
    async def interim(conn: Conn, _request: bytes) -> bool:
        conn.send(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A:  b \r\n\r\nok")
        return True

    async def garbled(conn: Conn, _request: bytes) -> bool:
        conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\n\r\n")
        return True

    async with serving(interim, garbled) as server:
        pool = HttpPool(server.url)
        resp = await pool.post("/api/generate", b"{}")
        assert (resp.status, resp.headers["x-a"], await resp.read()) == (200, "b", b"ok")
        resp.close()
        resp = await pool.post("/api/generate", b"{}")
        with pytest.raises(ConnectionClosed, match="malformed reply"):
            await resp.read()
        resp.close()
        assert server.connections == 1
        pool.close()


async def test_backend_maps_errors_and_stream_breaks_to_ollama_errors() -> None:
    async def broken_stream(conn: Conn, _request: bytes) -> bool:
        conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{\"done\":false}\n\r\n")
        return False  # dies mid-stream

    async with serving(fixed(404, b'{"error":"model \\"m\\" not found, try pulling it first"}'),
                       broken_stream) as server:
        backend = OllamaBackend(server.url)
        with pytest.raises(ModelNotFound):
            await anext(backend.generate({"model": "m", "prompt": "x"}))
        stream = backend.generate({"model": "m", "prompt": "x"})
        assert await anext(stream) == {"done": False}
        with pytest.raises(BackendUnavailable):
            await anext(stream)
        assert server.connections == 1  # the 404 was read whole, so its connection was kept
        await backend.close()
    with pytest.raises(BackendUnavailable):
        await anext(OllamaBackend(server.url).generate({"model": "m"}))  # nothing listens any more


def test_works_on_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> None:
        async with serving(chunked(b"3\r\n{}\n\r\n"), fixed(200, b"z")) as server:
            pool = HttpPool(server.url)
            assert await lines(pool) == [b"{}\n"]
            resp = await pool.post("/api/embed", b"{}")
            assert await resp.read() == b"z"
            resp.close()
            assert server.connections == 1
            pool.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())
