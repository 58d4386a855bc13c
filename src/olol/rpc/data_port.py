"""The tunnel's data port: ggml traffic on plain TCP (or TLS), admitted by single-use tickets.

Why it exists: decoding makes one ggml round trip per token and worker, and a
gRPC message costs about 100 us of CPU at each end here (a grpc.aio echo alone
is ~200 us), so tunnelling every token through gRPC messages cost a small
model 40% of its speed. The bytes themselves need no more than a socket.

Why it is still safe: the authenticated gRPC service stays the only door. A
coordinator asks it for a ticket (`OpenStream`, under the same cluster token,
API key and TLS as every call) and writes the ticket as the first 32 bytes
here; a connection without a valid ticket within `ADMIT_TIMEOUT` is closed
without a byte reaching the worker. Tickets are random, single use and expire
after `TICKET_TTL` seconds. When the service has TLS, so does this port, with
the same certificate and the same client-certificate rule.

After the ticket, the stream is handled exactly like a `Tunnel` call's chunks
(`olol.rpc.service`): frames validated one by one (HELLO first, known
commands, sizes within `--max-frame`), the worker connection opened only at
the first valid frame, HELLO's transport-upgrade caps cleared both ways, and a
malformed frame closes the connection before any of it reaches the worker.

Both directions are asyncio Protocols rather than streams: a token's bytes go
from `data_received` straight into the other socket's `write`, with no task
switch in between, which is most of what a relay costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import ssl
import time
from collections.abc import Callable

from olol._fast.framing import FrameParser, FramingError
from olol.ggml.relay import RelaySide, adopt
from olol.rpc.handshake import CLEAN_HELLO, HELLO_REPLY_END, clear_hello_caps
from olol.rpc.stats import TunnelStats
from olol.rpc.worker import GgmlWorker

__all__ = ["ADMIT_TIMEOUT", "TICKET_SIZE", "TICKET_TTL", "DataPort", "TicketBook"]

log = logging.getLogger(__name__)

TICKET_SIZE = 32
TICKET_TTL = 30.0  # seconds between OpenStream and the connection that presents the ticket
ADMIT_TIMEOUT = 5.0  # seconds a connection may take to present its ticket
MAX_TICKETS = 1024  # outstanding; an authenticated client asking for more just gets the oldest expired first
HIGH_WATER = 4 << 20  # bytes queued towards one side before the other side stops being read
HOLD_BYTES = 1 << 20  # a reply cut by a read is held up to this much before its first part goes


class TicketBook:
    """Single-use tickets with an expiry. Only their sha256 is kept: a lookup keyed by the digest
    leaks nothing useful through timing about a ticket an attacker does not already hold."""

    def __init__(self, ttl: float = TICKET_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._expiry: dict[bytes, float] = {}

    def __len__(self) -> int:
        return len(self._expiry)

    def issue(self) -> bytes:
        now = self._clock()
        if len(self._expiry) >= MAX_TICKETS:
            self._expiry = {k: t for k, t in self._expiry.items() if t > now}
            while len(self._expiry) >= MAX_TICKETS:  # all live: the oldest goes
                del self._expiry[next(iter(self._expiry))]
        ticket = secrets.token_bytes(TICKET_SIZE)
        self._expiry[hashlib.sha256(ticket).digest()] = now + self.ttl
        return ticket

    def redeem(self, ticket: bytes) -> bool:
        """True once for a ticket issued and not expired; False for anything else."""
        expiry = self._expiry.pop(hashlib.sha256(ticket).digest(), None)
        return expiry is not None and expiry > self._clock()


class DataPort:
    """Listen for ticketed tunnel connections and carry each to the ggml worker."""

    def __init__(
        self,
        worker: GgmlWorker,
        stats: TunnelStats,
        *,
        max_frame: int,
        ssl_context: ssl.SSLContext | None = None,
        tickets: TicketBook | None = None,
    ) -> None:
        self.worker = worker
        self.stats = stats
        self.max_frame = max_frame
        self.ssl_context = ssl_context
        self.tickets = tickets or TicketBook()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._sessions: set[_ClientSide] = set()

    @property
    def tls(self) -> bool:
        return self.ssl_context is not None

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _ClientSide(self), host or None, port, ssl=self.ssl_context, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for session in list(self._sessions):
                session.abort()
            await self._server.wait_closed()
            self._server = None

    def refused(self, peer: object, why: str) -> None:
        self.stats.rejected += 1
        n = self.stats.rejected
        if n in (1, 10, 100) or n % 1000 == 0:  # a port scan must not flood the log
            log.warning("data port refused %s: %s (%d refused so far)", peer, why, n)


class _ClientSide(RelaySide):
    """A coordinator's connection: the ticket, then validated frames for the worker."""

    def __init__(self, port: DataPort) -> None:
        self.port = port
        self.transport: asyncio.Transport | None = None
        self.peer: object = None
        self.head = b""  # the ticket, as it arrives
        self.admitted = False
        self.parser: FrameParser | None = None
        self.worker_side: _WorkerSide | None = None
        self.pending: list[bytes | memoryview] = []  # validated frames that arrived before the worker connection was up
        self.connecting = False
        self.closed = False
        self.held = contextlib.ExitStack()  # the worker session, held while we are admitted
        self.timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = adopt(transport, HIGH_WATER)
        self.peer = transport.get_extra_info("peername")
        self.port._sessions.add(self)
        self.timer = asyncio.get_running_loop().call_later(ADMIT_TIMEOUT, self._too_slow)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if not self.admitted:
            data = self._admit(data)
            if not data:
                return
        parser = self.parser
        assert parser is not None
        carried = parser.buffered
        try:
            frames = parser.feed(data)
        except FramingError as exc:
            self.port.refused(self.peer, f"malformed ggml RPC stream: {exc}")
            self.abort()
            return
        if not frames:
            return  # store and forward: a frame reaches the worker only once it is whole
        worker_side = self.worker_side
        if worker_side is None or worker_side.transport is None:
            self._hold([f.raw for f in frames])
            return
        if carried == 0 and parser.buffered == 0:
            worker_side.transport.write(data)  # exactly these frames: the per-token case
            self.port.stats.bytes_to_worker += len(data)
        else:
            raws = [f.raw for f in frames]
            worker_side.transport.writelines(raws)
            self.port.stats.bytes_to_worker += sum(len(r) for r in raws)

    def eof_received(self) -> bool | None:
        # The coordinator is done: closing the worker connection is what frees its session there.
        self._finish()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish()

    def feeder(self) -> asyncio.Transport | None:  # the coordinator reads slower than the worker replies
        return self.worker_side.transport if self.worker_side is not None else None

    # -- steps -----------------------------------------------------------------------

    def _admit(self, data: bytes) -> bytes:
        """Collect the ticket; return what follows it once admitted (b"" until then, or when refused)."""
        self.head += data
        if len(self.head) < TICKET_SIZE:
            return b""
        ticket, rest = self.head[:TICKET_SIZE], self.head[TICKET_SIZE:]
        self.head = b""
        if self.timer is not None:
            self.timer.cancel()
        if not self.port.tickets.redeem(ticket):
            self.port.refused(self.peer, "no valid ticket")
            self.abort()
            return b""
        self.admitted = True
        self.parser = FrameParser("request", self.port.max_frame, handshake=True)
        self.port.stats.opened(self.parser)
        self.held.enter_context(self.port.worker.session())
        return rest

    def _hold(self, raws: list[bytes | memoryview]) -> None:
        if not self.pending and not self.connecting:
            # The first frame is the (validated) HELLO: the worker gets one that offers no upgrade.
            raws = [CLEAN_HELLO, *raws[1:]]
            self.connecting = True
            asyncio.get_running_loop().create_task(self._connect())
        self.pending += raws
        if sum(len(r) for r in self.pending) > HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()

    async def _connect(self) -> None:
        worker = self.port.worker
        self.port.stats.worker_connections += 1
        loop = asyncio.get_running_loop()
        try:
            sock = await worker.open_socket()  # an isolated worker's comes from its gate
            _, side = await loop.create_connection(lambda: _WorkerSide(self), sock=sock)
        except OSError as exc:
            log.warning("data port: ggml worker %s: %s", worker.endpoint, exc)
            self.abort()
            return
        if self.closed:
            if side.transport is not None:
                side.transport.abort()
            return
        self.worker_side = side
        assert side.transport is not None
        side.transport.writelines(self.pending)
        self.port.stats.bytes_to_worker += sum(len(r) for r in self.pending)
        self.pending = []
        if self.transport is not None:
            self.transport.resume_reading()

    def _too_slow(self) -> None:
        if not self.admitted:
            self.port.refused(self.peer, f"no ticket within {ADMIT_TIMEOUT:.0f}s")
            self.abort()

    def abort(self) -> None:
        """Drop both connections at once (the worker frees what this client allocated)."""
        if self.transport is not None:
            self.transport.abort()
        if self.worker_side is not None and self.worker_side.transport is not None:
            self.worker_side.transport.abort()
        self._finish()

    def _finish(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        if self.worker_side is not None and self.worker_side.transport is not None:
            self.worker_side.transport.close()  # after what is queued for the worker is written
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        if self.parser is not None:
            self.port.stats.closed(self.parser)
        self.held.close()
        self.port._sessions.discard(self)


class _WorkerSide(RelaySide):
    """The connection to the ggml worker: its replies go back unchanged (it is trusted), except for
    the HELLO reply's caps."""

    def __init__(self, client: _ClientSide) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.offset = 0
        # The worker writes a reply's size and its payload separately; sent on as one write, a reply costs
        # the coordinator and llama-server one wake-up each instead of two (as Tunnel's one message).
        self.replies = FrameParser("reply", 1 << 62)
        self.held: list[bytes] = []
        self.held_bytes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = adopt(transport, HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        if self.offset < HELLO_REPLY_END:
            data = clear_hello_caps(data, self.offset)
        self.offset += len(data)
        self.client.port.stats.bytes_from_worker += len(data)
        self.replies.feed(data)
        self.held.append(data)
        self.held_bytes += len(data)
        if self.replies.buffered and self.held_bytes < HOLD_BYTES:
            return  # the rest of this reply is on its way
        data = data if len(self.held) == 1 else b"".join(self.held)
        self.held.clear()
        self.held_bytes = 0
        client = self.client.transport
        if client is not None and not self.client.closed:
            client.write(data)

    def feeder(self) -> asyncio.Transport | None:  # the worker reads slower than the coordinator sends (weights)
        return self.client.transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.held and self.client.transport is not None and not self.client.closed:
            self.client.transport.write(b"".join(self.held))
        # The worker went away (it died, or dropped a bad session): the coordinator must see it.
        if not self.client.closed and self.client.transport is not None:
            self.client.transport.close()
