"""The coordinator's end of the tunnel: a loopback port per remote worker for llama-server.

llama-server is given `--rpc 127.0.0.1:<local port>`; each TCP connection it
opens there is carried to the remote `olol rpc-server`, which validates the
frames and feeds its worker (this end does not need to: the remote end is the
one that protects the worker). Two ways, `data_path`:

* "stream" (used when the rpc-server has a data port): the connection asks
  the gRPC service for a ticket (`OpenStream`, authenticated like any call),
  dials the data port (TLS when the service has TLS), presents the ticket and
  from then on relays bytes both ways as they come, in asyncio Protocols with
  no task switch per message. A token's round trip costs a few socket writes.
* "grpc": the connection becomes one `Tunnel` call, a stream of gRPC messages
  each way, for rpc-servers without a data port or networks where only the
  gRPC port is open. It costs about 0.2 ms of CPU at each end per round trip,
  which a small model feels on every token.

Both paths coalesce requests: per token llama-server writes a burst of
fire-and-forget frames (SET_TENSOR of the inputs, GRAPH_RECOMPUTE) ending in
one that expects a reply (GET_TENSOR of the result). Fire-and-forget frames
are held until a frame that expects a reply arrives (or 1 MiB is held, for
weight uploads, or the connection ends), and the burst goes as one gRPC
message or one socket write: one wake-up of the rpc-server and one read of the
worker instead of seven. That is safe because llama.cpp's client cannot
observe the effect of a frame without a reply except through a later reply on
the same connection, and it costs nothing because the reply-expecting frame
follows within microseconds (llama.cpp copies between RPC servers with a
synchronous GET_TENSOR). Replies are forwarded as they arrive.

When the remote end goes away, the local connection is closed: llama-server
then fails the way it does when a worker dies, and the coordinator re-plans.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc

from olol._fast.framing import FrameParser, FramingError, expects_reply
from olol.ggml.relay import RelaySide, adopt
from olol.proto import ggml_pb as pb
from olol.split.workers import RemoteWorker

__all__ = ["DATA_PATHS", "LocalTunnel", "TunnelCounters"]

log = logging.getLogger(__name__)

DATA_PATHS = ("stream", "grpc")
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
    """Listen on 127.0.0.1 for llama-server and carry each connection to `worker`."""

    def __init__(
        self,
        worker: RemoteWorker,
        host: str = "127.0.0.1",
        on_broken: Callable[[str, str], None] | None = None,
        data_path: str = "stream",
    ) -> None:
        """`on_broken(address, why)` is called when the remote end closes a connection llama-server still
        holds. `data_path`: "stream" (the rpc-server's data port, when it has one and it can be reached)
        or "grpc"; `start()` settles which one is used."""
        if data_path not in DATA_PATHS:
            raise ValueError(f"data path must be one of {', '.join(DATA_PATHS)}, not {data_path!r}")
        self.worker = worker
        self.host = host
        self.on_broken = on_broken
        self.data_path = data_path
        self.counters = TunnelCounters()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._sides: set[_LocalSide] = set()
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        if self.data_path == "stream" and not await self._data_port_reachable():
            self.data_path = "grpc"
        if self.data_path == "stream":
            loop = asyncio.get_running_loop()
            self._server = await loop.create_server(lambda: _LocalSide(self), self.host, 0)
        else:
            self._server = await asyncio.start_server(self._accepted, self.host, 0, limit=READ_SIZE)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _data_port_reachable(self) -> bool:
        """Whether the rpc-server offers a data port this host can connect to (a firewall may allow only
        the gRPC port: then the slower gRPC path still works)."""
        caps = self.worker.last or await self.worker.capabilities()
        if not caps.data_port:
            log.info("rpc-server %s has no data port: tunnelling through gRPC messages", self.worker.address)
            return False
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(self.worker.host, caps.data_port), 5.0)
        except (TimeoutError, OSError) as exc:
            log.warning(
                "data port %s:%d of rpc-server %s is unreachable (%s): tunnelling through gRPC messages, "
                "which costs more per token",
                self.worker.host, caps.data_port, self.worker.address, exc or "timed out",
            )  # fmt: skip
            return False
        writer.close()  # closed before any ticket: the rpc-server neither counts nor logs it
        return True

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for side in list(self._sides):
                side.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _broken(self, why: str) -> None:
        self.counters.failures += 1
        self.counters.last_error = why
        log.warning("tunnel to %s failed: %s", self.worker.address, why)
        if self.on_broken is not None:
            self.on_broken(self.worker.address, why)

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


class _LocalSide(RelaySide):
    """llama-server's connection in the stream data path: bytes go to the data port as they come."""

    def __init__(self, tunnel: LocalTunnel) -> None:
        self.tunnel = tunnel
        self.transport: asyncio.Transport | None = None
        self.remote: _RemoteSide | None = None
        self.pending: list[bytes] = []  # what llama-server wrote before the data port connection was up
        # Fire-and-forget frames wait for the frame that expects a reply, as in the gRPC path (see the
        # module docstring): llama-server writes a token's frames one by one, and one write instead of
        # seven spares the rpc-server six wake-ups and the worker six reads per token.
        self.parser: FrameParser | None = FrameParser("request", 1 << 62)
        self.held: list[bytes] = []
        self.held_bytes = 0
        self.hung_up = False  # llama-server closed its side (then the remote closing is no failure)
        self.done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = adopt(transport, READ_SIZE)
        counters = self.tunnel.counters
        counters.connections += 1
        counters.active += 1
        self.tunnel._sides.add(self)
        task = asyncio.get_running_loop().create_task(self._open())
        self.tunnel._tasks.add(task)
        task.add_done_callback(self.tunnel._tasks.discard)

    async def _open(self) -> None:
        tunnel = self.tunnel
        worker = tunnel.worker
        try:
            ticket = await worker.open_stream()
            context = worker.data_ssl_context() if ticket.tls else None
            _, remote = await asyncio.get_running_loop().create_connection(
                lambda: _RemoteSide(self),
                worker.host,
                ticket.port,
                ssl=context,
                server_hostname=worker.host if context is not None else None,
            )
        except grpc.aio.AioRpcError as exc:
            self._fail(f"{exc.code().name}: {exc.details()}")
            return
        except (OSError, ssl.SSLError) as exc:
            self._fail(f"data port {worker.host}: {exc}")
            return
        if self.done:
            remote.close()
            return
        self.remote = remote
        assert remote.transport is not None
        remote.transport.writelines([ticket.ticket, *self.pending])
        self.pending = []

    def data_received(self, data: bytes) -> None:
        self.tunnel.counters.bytes_up += len(data)
        parser = self.parser
        if parser is not None:
            try:
                frames = parser.feed(data)
            except FramingError:
                self.parser = None  # not ggml RPC after all: forward as it comes; the rpc-server refuses it
            else:
                self.held.append(data)
                self.held_bytes += len(data)
                if self.held_bytes < FLUSH_BYTES and not any(expects_reply(f.cmd) for f in frames):
                    return
                data = data if len(self.held) == 1 else b"".join(self.held)
                self.held.clear()
                self.held_bytes = 0
        self._send(data)

    def _send(self, data: bytes) -> None:
        self.tunnel.counters.messages_up += 1
        remote = self.remote
        if remote is None or remote.transport is None:
            self.pending.append(data)
        else:
            remote.transport.write(data)

    def eof_received(self) -> bool | None:
        if self.held:  # llama-server is done: what it wrote last goes too
            self._send(b"".join(self.held))
            self.held.clear()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.hung_up = True
        self.close()

    def feeder(self) -> asyncio.Transport | None:  # llama-server reads slower than the worker replies
        return self.remote.transport if self.remote is not None else None

    def _fail(self, why: str) -> None:
        if not self.hung_up and not self.done:
            self.tunnel._broken(why)
        self.close()

    def close(self) -> None:
        if self.done:
            return
        self.done = True
        self.tunnel.counters.active -= 1
        self.tunnel._sides.discard(self)
        if self.remote is not None:
            self.remote.close()  # after what is queued is written: the worker frees the session
        if self.transport is not None:
            self.transport.close()


class _RemoteSide(RelaySide):
    """The data port connection: the worker's replies go to llama-server unchanged."""

    def __init__(self, local: _LocalSide) -> None:
        self.local = local
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = adopt(transport, READ_SIZE)

    def data_received(self, data: bytes) -> None:
        counters = self.local.tunnel.counters
        counters.bytes_down += len(data)
        counters.messages_down += 1
        local = self.local.transport
        if local is not None:
            local.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.local.done:
            why = f"the rpc-server closed the connection ({exc})" if exc else "the rpc-server closed the connection"
            self.local._fail(why)

    def feeder(self) -> asyncio.Transport | None:  # the data port reads slower than llama-server writes (weights)
        return self.local.transport

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
