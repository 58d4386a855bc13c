"""The tunnel's data port: only a ticket from the authenticated gRPC service opens it, a ticket works once,
and the byte stream behind it is validated exactly like a gRPC `Tunnel` call's."""

from __future__ import annotations

import asyncio
import struct

import grpc
import pytest

from olol.rpc import data_port
from olol.rpc.data_port import TICKET_SIZE, TicketBook
from olol.rpc.ggml_client import GgmlClient
from olol.rpc.server import RpcServer
from olol.split.tunnel import LocalTunnel
from olol.split.workers import RemoteWorker
from tests.split.conftest import TOKEN, RpcFactory
from tests.split.test_tunnel_security import DEVICE_COUNT, HELLO, MALFORMED_FIRST, MALFORMED_LATER, MAX_FRAME, replies

# -- tickets (no worker needed) --------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_ticket_opens_once_and_only_before_it_expires() -> None:
    clock = Clock()
    book = TicketBook(ttl=30.0, clock=clock)
    first, second = book.issue(), book.issue()
    assert len(first) == TICKET_SIZE and first != second
    assert book.redeem(first) and not book.redeem(first)  # single use
    assert not book.redeem(bytes(TICKET_SIZE)) and not book.redeem(first[:-1] + bytes(1))
    clock.now += 31.0
    assert not book.redeem(second)  # expired
    assert len(book) == 0


def test_outstanding_tickets_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data_port, "MAX_TICKETS", 4)
    clock = Clock()
    book = TicketBook(ttl=30.0, clock=clock)
    old = [book.issue() for _ in range(4)]
    newest = book.issue()  # all four live: the oldest makes room
    assert len(book) == 4 and not book.redeem(old[0]) and book.redeem(old[1]) and book.redeem(newest)
    book.issue(), book.issue()
    clock.now += 60.0
    book.issue()  # full again, but all expired: they are dropped, not the live one
    assert len(book) == 1


# -- the port, with a real ggml worker --------------------------------------------------------------------


async def fresh_ticket(server: RpcServer) -> bytes:
    worker = RemoteWorker(server.target, token=TOKEN)
    try:
        return (await worker.open_stream()).ticket
    finally:
        await worker.close()


def device_count_through(port: int) -> int:
    """HELLO and DEVICE_COUNT from a ggml client on `port` (llama-server's side of a local tunnel)."""
    with GgmlClient("127.0.0.1", port, timeout=10) as client:
        client.hello()
        return client.device_count()


async def stream(server: RpcServer, data: bytes, *, ticket: bytes | None = None) -> bytes:
    """Write a ticket (a fresh one unless given) and `data` on the data port; return all the worker's bytes
    until the port closes the connection."""
    assert server.data_port is not None
    if ticket is None:
        ticket = await fresh_ticket(server)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.data_port.port)
    writer.write(ticket + data)
    await writer.drain()
    try:
        got = b""
        expected = replies_expected(data)
        while len(replies(got)) < expected or expected == 0:
            chunk = await asyncio.wait_for(reader.read(1 << 16), 10)
            if not chunk:
                break
            got += chunk
        return got
    finally:
        writer.close()


def replies_expected(data: bytes) -> int:
    """Replies a well-formed stream of HELLO / DEVICE_COUNT frames gets (0 when the port should close)."""
    return data.count(HELLO[:9]) + data.count(DEVICE_COUNT) if data.startswith(HELLO) else 0


async def closed_without_reply(server: RpcServer, data: bytes, ticket: bytes | None = None) -> bool:
    assert server.data_port is not None
    if ticket is None:
        ticket = await fresh_ticket(server)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.data_port.port)
    writer.write(ticket + data)
    try:
        return await asyncio.wait_for(reader.read(), 10) == b""
    except ConnectionResetError:
        return True
    finally:
        writer.close()


@pytest.fixture
async def server(rpc_server: RpcFactory) -> RpcServer:
    return await rpc_server(max_frame=MAX_FRAME)


@pytest.mark.slow
async def test_ticketed_stream_reaches_the_worker(server: RpcServer) -> None:
    caps = await RemoteWorker(server.target, token=TOKEN).capabilities()
    assert server.data_port is not None and caps.data_port == server.data_port.port
    data = await stream(server, HELLO + DEVICE_COUNT)
    hello, count = replies(data)
    assert hello[:3] == bytes((7, 0, 0)) and hello[4:] == bytes(24)  # no transport upgrade offered back
    assert struct.unpack("<I", count) == (1,)
    stats = server.service.stats.snapshot()  # one set of counters for both ways in
    assert stats.worker_connections == 1 and stats.commands == {"HELLO": 1, "DEVICE_COUNT": 1}
    assert stats.tunnels_total == 1 and stats.bytes_to_worker == len(HELLO + DEVICE_COUNT)


@pytest.mark.slow
@pytest.mark.parametrize("token", [None, "not-the-token"], ids=["missing", "wrong"])
async def test_tickets_need_the_token(server: RpcServer, token: str | None) -> None:
    worker = RemoteWorker(server.target, token=token)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await worker.open_stream()
    await worker.close()
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.slow
async def test_without_a_valid_ticket_nothing_reaches_the_worker(
    server: RpcServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    used = await fresh_ticket(server)
    assert len(replies(await stream(server, HELLO, ticket=used))) == 1
    made_up = bytes(range(TICKET_SIZE))
    assert await closed_without_reply(server, HELLO + DEVICE_COUNT, ticket=made_up)
    assert await closed_without_reply(server, HELLO + DEVICE_COUNT, ticket=used)  # already redeemed
    monkeypatch.setattr(data_port, "ADMIT_TIMEOUT", 0.2)
    assert await closed_without_reply(server, b"", ticket=used[:10])  # too slow to present one
    stats = server.service.stats.snapshot()
    assert stats.tunnels_rejected == 3 and stats.worker_connections == 1  # only the valid one got through


@pytest.mark.slow
@pytest.mark.parametrize("bad", MALFORMED_FIRST.values(), ids=MALFORMED_FIRST.keys())
async def test_malformed_stream_never_touches_the_worker(server: RpcServer, bad: bytes) -> None:
    assert await closed_without_reply(server, bad)
    stats = server.service.stats.snapshot()
    assert stats.worker_connections == 0 and stats.tunnels_rejected == 1
    assert len(replies(await stream(server, HELLO + DEVICE_COUNT))) == 2  # and it still serves


@pytest.mark.slow
@pytest.mark.parametrize("bad", MALFORMED_LATER.values(), ids=MALFORMED_LATER.keys())
async def test_malformed_frame_is_not_forwarded(server: RpcServer, bad: bytes) -> None:
    got = await stream(server, HELLO + DEVICE_COUNT + bad + DEVICE_COUNT)
    # The frames before the bad one were already whole and forwarded; nothing from the bad one on was.
    stats = server.service.stats.snapshot()
    assert stats.tunnels_rejected == 1 and stats.bytes_to_worker <= len(HELLO + DEVICE_COUNT)
    assert len(replies(got)) <= 2
    assert len(replies(await stream(server, HELLO + DEVICE_COUNT))) == 2
    assert server.worker.running and server.worker.restarts == 0


@pytest.mark.slow
async def test_local_tunnel_uses_the_data_port(server: RpcServer) -> None:
    broken: list[str] = []
    tunnel = LocalTunnel(RemoteWorker(server.target, token=TOKEN), on_broken=lambda a, why: broken.append(why))
    await tunnel.start()
    try:
        assert tunnel.data_path == "stream"

        def talk() -> tuple[tuple[int, int, int], int]:
            with GgmlClient("127.0.0.1", tunnel.port, timeout=10) as client:
                return client.hello(), client.device_count()

        assert await asyncio.to_thread(talk) == ((7, 0, 0), 1)
        stats = server.service.stats.snapshot()
        assert stats.commands == {"HELLO": 1, "DEVICE_COUNT": 1} and stats.worker_connections == 1
        assert tunnel.counters.connections == 1 and tunnel.counters.failures == 0 and not broken

        # The rpc-server going away while llama-server holds the connection is reported (the coordinator
        # re-plans on it), and the local connection is closed.
        client = GgmlClient("127.0.0.1", tunnel.port, timeout=10)
        await asyncio.to_thread(client.hello)
        await server.stop()
        for _ in range(200):
            if broken:
                break
            await asyncio.sleep(0.05)
        assert broken and "closed" in broken[0]
        client.close()
    finally:
        await tunnel.close()


@pytest.mark.slow
@pytest.mark.parametrize("offered", [False, True], ids=["no data port", "data port unreachable"])
async def test_without_a_usable_data_port_the_tunnel_uses_grpc(rpc_server: RpcFactory, offered: bool) -> None:
    """An rpc-server run with --no-data-port, or one whose data port a firewall blocks (only the gRPC port
    gets through): the tunnel still works, through gRPC messages."""
    server = await rpc_server(data_port=0 if offered else None)
    worker = RemoteWorker(server.target, token=TOKEN)
    if offered:
        assert server.data_port is not None
        await server.data_port.close()  # still advertised in the capabilities, but nothing listens there
        assert (await worker.capabilities()).data_port == server.data_port.port
    else:
        assert (await worker.capabilities()).data_port == 0
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await worker.open_stream()
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    tunnel = LocalTunnel(worker)
    await tunnel.start()
    try:
        assert tunnel.data_path == "grpc"
        assert await asyncio.to_thread(device_count_through, tunnel.port) == 1
    finally:
        await tunnel.close()
        await worker.close()
