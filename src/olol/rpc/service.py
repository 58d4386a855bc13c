"""The `RpcWorker` gRPC service: capabilities of the local ggml worker, and the tunnel into it.

The tunnel comes two ways: `Tunnel`, the ggml byte stream as gRPC messages,
and `OpenStream`, a ticket for the same stream on the data port
(`olol.rpc.data_port`), which costs a fraction of the CPU per token. Both are
validated the same way, described here for `Tunnel`.

Each `Tunnel` call is one ggml RPC client connection. The request bytes are
parsed frame by frame (`olol._fast.framing.FrameParser`, HELLO first, known
commands, sizes within bounds) and only whole, valid frames are written to the
worker: a malformed frame ends the call with INVALID_ARGUMENT and none of it
reaches the worker, whose parser has a history of remote crashes. The worker
connection is opened only once the first valid frame is ready, so a stream
refused at its first frame never touches the worker at all.

Replies are not validated (the worker is trusted); they are only cut at reply
boundaries, because the worker writes a reply's size and payload separately
and one gRPC message per reply instead of per read halves the messages per
token, each of which costs far more CPU than its bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator

import grpc
import psutil

from olol._fast.framing import FrameParser, FramingError
from olol.proto import ggml_grpc as rpc
from olol.proto import ggml_pb as pb
from olol.rpc.data_port import DataPort
from olol.rpc.handshake import CLEAN_HELLO, HELLO_REPLY_END, clear_hello_caps
from olol.rpc.stats import TunnelStats
from olol.rpc.worker import GgmlWorker
from olol.security.tokens import Unauthorized, check_token

__all__ = ["READ_SIZE", "RpcWorkerService", "WorkerAdvice"]

log = logging.getLogger(__name__)

READ_SIZE = 4 << 20  # one gRPC message per worker read, at most
RESTART_WAIT = 5.0  # seconds Capabilities waits for a crashed worker to be restarted
HOLD_BYTES = 1 << 20  # a reply cut by a read is held up to this much before its first part goes


class WorkerAdvice:
    """Advisory settings reported to coordinators (their llama-server applies them)."""

    def __init__(self, flash_attention: bool = False, context_window: int = 0, quantize: str = "") -> None:
        self.flash_attention = flash_attention
        self.context_window = context_window
        self.quantize = quantize


class RpcWorkerService(rpc.RpcWorkerServicer):
    def __init__(
        self,
        worker: GgmlWorker,
        *,
        token: str | None,
        max_frame: int,
        device_kind: str = "auto",
        direct_endpoint: str | None = None,
        advice: WorkerAdvice | None = None,
        preseeded: list[str] | None = None,
        memory_limit: int | None = None,
        stats: TunnelStats | None = None,
        data_port: DataPort | None = None,
    ) -> None:
        self.worker = worker
        self.token = token
        self.max_frame = max_frame
        self.device_kind = device_kind
        # "": none (an isolated worker cannot be dialled from outside its namespace).
        self.direct_endpoint = worker.endpoint if direct_endpoint is None else direct_endpoint
        self.advice = advice or WorkerAdvice()
        self.preseeded = preseeded if preseeded is not None else []
        self.memory_limit = memory_limit
        self.stats = stats or TunnelStats()
        self.data_port = data_port  # shares `stats` when there is one

    async def _authorize(self, context: grpc.aio.ServicerContext[object, object]) -> None:
        try:
            check_token(context.invocation_metadata(), self.token)
        except Unauthorized as exc:
            self.stats.rejected += 1
            if self.stats.rejected in (1, 10, 100) or self.stats.rejected % 1000 == 0:  # a scan must not flood the log
                log.warning("refused %s (%d refused so far)", context.peer(), self.stats.rejected)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, exc.message)

    # -- Capabilities --------------------------------------------------------

    async def Capabilities(
        self, request: pb.CapabilitiesRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.WorkerCapabilities:
        await self._authorize(context)
        if not await self.worker.wait_running(RESTART_WAIT):
            # A worker that stays down must not be planned on: say so rather than report stale figures.
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"ggml worker {self.worker.endpoint} is down")
        probe = await self.worker.refresh() if request.refresh else self.worker.probe
        snap = self.stats.snapshot()
        reply = pb.WorkerCapabilities(
            hostname=socket.gethostname(),
            cores=psutil.cpu_count() or os.cpu_count() or 1,
            threads=self.worker.config.threads or 0,
            device_kind=self.device_kind,
            busy=self.worker.busy,
            cache=self.worker.config.cache_dir is not None,
            preseeded=self.preseeded,
            direct_endpoint=self.direct_endpoint,
            worker_restarts=self.worker.restarts,
            flash_attention=self.advice.flash_attention,
            context_window=self.advice.context_window,
            quantize=self.advice.quantize,
            data_port=self.data_port.port if self.data_port is not None else 0,
            stats=pb.TunnelStats(
                tunnels_total=snap.tunnels_total,
                tunnels_active=snap.tunnels_active,
                tunnels_rejected=snap.tunnels_rejected,
                bytes_to_worker=snap.bytes_to_worker,
                bytes_from_worker=snap.bytes_from_worker,
                worker_connections=snap.worker_connections,
                commands=snap.commands,
                command_bytes=snap.command_bytes,
            ),
        )
        if probe is not None:
            reply.protocol_version = probe.version_text
            reply.speed = probe.speed
            reply.probed_at = probe.probed_at
            # --max-memory: what this host lends to split models, whatever else it has free.
            limit = self.memory_limit or 1 << 63
            for d in probe.devices:
                reply.devices.append(
                    pb.Device(
                        index=d.index, name=d.name, free_bytes=min(d.free_bytes, limit), total_bytes=d.total_bytes
                    )
                )
        return reply

    # -- Tunnel --------------------------------------------------------------

    async def Tunnel(
        self, request_iterator: AsyncIterator[pb.Chunk], context: grpc.aio.ServicerContext[object, object]
    ) -> AsyncIterator[pb.Chunk]:
        await self._authorize(context)
        parser = FrameParser("request", self.max_frame, handshake=True)
        session = _Session(self, parser)
        self.stats.opened(parser)
        try:
            with self.worker.session():
                async for data in session.run(request_iterator):
                    yield pb.Chunk(data=data)
        except FramingError as exc:
            self.stats.rejected += 1
            log.warning("tunnel from %s closed: malformed ggml stream: %s", context.peer(), exc)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed ggml RPC stream: {exc}")
        except OSError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"ggml worker {self.worker.endpoint}: {exc}")
        finally:
            self.stats.closed(parser)

    # -- OpenStream ------------------------------------------------------------

    async def OpenStream(
        self, request: pb.OpenStreamRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.StreamTicket:
        await self._authorize(context)
        port = self.data_port
        if port is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "this rpc-server has no data port: use Tunnel")
            raise AssertionError("unreachable")  # abort raises; this tells mypy
        return pb.StreamTicket(ticket=port.tickets.issue(), port=port.port, tls=port.tls, valid_for=port.tickets.ttl)


class _Session:
    """One tunnelled connection: validated client frames in, worker bytes out."""

    def __init__(self, service: RpcWorkerService, parser: FrameParser) -> None:
        self.service = service
        self.parser = parser
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.connected = asyncio.Event()

    async def run(self, requests: AsyncIterator[pb.Chunk]) -> AsyncIterator[bytes]:
        """Yield the worker's bytes; raise FramingError for a malformed client stream."""
        pump = asyncio.create_task(self._pump_requests(requests))
        waiter = asyncio.create_task(self.connected.wait())
        try:
            # Nothing to relay until the first valid frame made us connect (or the client gave up).
            await asyncio.wait({pump, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if not self.connected.is_set():
                pump.result()  # raises the FramingError, if that is why
                return
            assert self.reader is not None
            stats = self.service.stats
            replies = FrameParser("reply", 1 << 62)
            held: list[bytes] = []
            held_bytes = offset = 0
            # A failing pump closes the worker connection, which ends this loop too.
            while data := await self.reader.read(READ_SIZE):
                if offset < HELLO_REPLY_END:
                    data = clear_hello_caps(data, offset)
                offset += len(data)
                stats.bytes_from_worker += len(data)
                replies.feed(data)
                held.append(data)
                held_bytes += len(data)
                if replies.buffered and held_bytes < HOLD_BYTES:
                    continue
                yield data if len(held) == 1 else b"".join(held)
                held.clear()
                held_bytes = 0
            if held:
                yield b"".join(held)
            if pump.done():
                pump.result()
        finally:
            waiter.cancel()
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, FramingError, OSError):
                await pump
            if self.writer is not None:
                self.writer.close()  # the worker frees everything this client allocated

    async def _pump_requests(self, requests: AsyncIterator[pb.Chunk]) -> None:
        parser = self.parser
        stats = self.service.stats
        try:
            async for chunk in requests:
                data = chunk.data
                carried = parser.buffered
                frames = parser.feed(data)
                if not frames:
                    continue  # store and forward: a frame reaches the worker only once it is whole
                writer = self.writer
                if writer is None:
                    writer = await self._connect()
                    # Only a plain TCP session can be tunnelled: advertise no transport upgrade.
                    writer.write(CLEAN_HELLO)
                    for frame in frames[1:]:
                        writer.write(frame.raw)
                    sent = sum(len(f.raw) for f in frames)
                elif carried == 0 and parser.buffered == 0:
                    writer.write(data)  # the chunk is exactly these frames (the per-token case)
                    sent = len(data)
                else:
                    for frame in frames:
                        writer.write(frame.raw)
                    sent = sum(len(f.raw) for f in frames)
                stats.bytes_to_worker += sent
                await writer.drain()
        except BaseException:
            if self.writer is not None:
                self.writer.transport.abort()  # wakes the reply loop, and the worker drops the session
            raise
        if self.writer is not None:
            # The client is gone: closing our side is what tells the worker to free its session.
            with contextlib.suppress(OSError):
                self.writer.write_eof()

    async def _connect(self) -> asyncio.StreamWriter:
        worker = self.service.worker
        self.service.stats.worker_connections += 1
        sock = await worker.open_socket()  # with TCP_NODELAY; an isolated worker's comes from its gate
        self.reader, self.writer = await asyncio.open_connection(sock=sock, limit=READ_SIZE)
        self.connected.set()
        return self.writer
