"""The coordinator's end of the tunnel: a loopback port per remote worker for llama-server.

llama-server is given `--rpc 127.0.0.1:<local port>`; each TCP connection it
opens there becomes one `Tunnel` call to the remote `olol rpc-server`, which
validates the frames and feeds its worker (this end does not need to: the
remote end is the one that protects the worker).

Every token makes a round trip through here, and a gRPC message costs far more
CPU than its bytes do, so requests are coalesced: per token llama-server writes
a burst of fire-and-forget frames (SET_TENSOR of the inputs, GRAPH_RECOMPUTE)
ending in one that expects a reply (GET_TENSOR of the result). Fire-and-forget
frames are held until a frame that expects a reply arrives (or 1 MiB is held,
for weight uploads, or the connection ends), and the burst goes as one message.
That is safe because llama.cpp's client cannot observe the effect of a frame
without a reply except through a later reply on the same connection, and it
costs nothing because the reply-expecting frame follows within microseconds
(llama.cpp copies between RPC servers with a synchronous GET_TENSOR). Replies
are forwarded as they arrive.

When the remote end goes away, the local connection is closed: llama-server
then fails the way it does when a worker dies, and the coordinator re-plans.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc

from olol._fast.framing import FrameParser, FramingError, expects_reply
from olol.dist.workers import RemoteWorker
from olol.rpc._pb import pb

__all__ = ["LocalTunnel", "TunnelCounters"]

log = logging.getLogger(__name__)

READ_SIZE = 4 << 20
FLUSH_BYTES = 1 << 20  # held fire-and-forget bytes that go out without waiting for a reply-expecting frame


@dataclass
class TunnelCounters:
    connections: int = 0
    active: int = 0
    bytes_up: int = 0  # llama-server -> worker
    bytes_down: int = 0
    messages_up: int = 0
    messages_down: int = 0
    failures: int = 0
    last_error: str = ""


class LocalTunnel:
    """Listen on 127.0.0.1 for llama-server and carry each connection to `worker` over gRPC."""

    def __init__(
        self, worker: RemoteWorker, host: str = "127.0.0.1", on_broken: Callable[[str, str], None] | None = None
    ) -> None:
        """`on_broken(address, why)` is called when the remote end closes a connection llama-server still holds."""
        self.worker = worker
        self.host = host
        self.on_broken = on_broken
        self.counters = TunnelCounters()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accepted, self.host, 0, limit=READ_SIZE)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._carry(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _carry(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counters = self.counters
        counters.connections += 1
        counters.active += 1
        hung_up = asyncio.Event()  # llama-server closed its side
        # gRPC consumes the request iterator in a task of its own; a refused call stops it, and the
        # call's status is then the server's (not a failed write of ours).
        call = self.worker.tunnel(self._requests(reader, hung_up))
        broken = ""
        try:
            async for chunk in call:
                data = chunk.data
                counters.bytes_down += len(data)
                counters.messages_down += 1
                writer.write(data)
                if writer.transport.get_write_buffer_size() > READ_SIZE:
                    await writer.drain()
            if not hung_up.is_set():
                broken = "the rpc-server closed the connection"
        except grpc.aio.AioRpcError as exc:
            if not hung_up.is_set():
                counters.failures += 1
                broken = counters.last_error = f"{exc.code().name}: {exc.details()}"
                log.warning("tunnel to %s failed: %s", self.worker.address, counters.last_error)
        except (ConnectionError, OSError) as exc:
            log.debug("llama-server side of the tunnel to %s closed: %s", self.worker.address, exc)
        finally:
            call.cancel()
            writer.close()
            counters.active -= 1
        if broken and self.on_broken is not None:
            self.on_broken(self.worker.address, broken)

    async def _requests(self, reader: asyncio.StreamReader, hung_up: asyncio.Event) -> AsyncIterator[pb.Chunk]:
        counters = self.counters
        # Only frame boundaries and commands matter here; the remote end enforces the limits.
        parser: FrameParser | None = FrameParser("request", 1 << 62)
        held: list[bytes] = []
        held_bytes = 0
        try:
            while data := await reader.read(READ_SIZE):
                counters.bytes_up += len(data)
                held.append(data)
                held_bytes += len(data)
                if parser is not None:
                    try:
                        frames = parser.feed(data)
                    except FramingError:
                        parser = None  # not ggml RPC after all: forward as it comes; the rpc-server refuses it
                    else:
                        if held_bytes < FLUSH_BYTES and not any(expects_reply(f.cmd) for f in frames):
                            continue
                yield pb.Chunk(data=data if len(held) == 1 else b"".join(held))
                counters.messages_up += 1
                held.clear()
                held_bytes = 0
        except (ConnectionError, OSError):
            pass
        if held:
            yield pb.Chunk(data=b"".join(held))
        hung_up.set()  # the end of this iterator half-closes the call: the remote end frees the worker
