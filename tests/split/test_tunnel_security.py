"""The tunnel into a ggml worker: the cluster token is required, and malformed ggml streams are refused
before any of their bytes reach the worker."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator

import grpc
import pytest

from olol._fast.framing import RpcCommand, encode_request
from olol.proto import ggml_pb as pb
from olol.rpc.server import RpcServer
from olol.split.workers import RemoteWorker
from tests.split.conftest import TOKEN, RpcFactory

pytestmark = pytest.mark.slow

HELLO = encode_request(RpcCommand.HELLO, b"\x01" * 24)  # non-zero caps: the tunnel must clear them
DEVICE_COUNT = encode_request(RpcCommand.DEVICE_COUNT)
MAX_FRAME = 1 << 20


async def tunnel(server: RpcServer, chunks: list[bytes], token: str | None = TOKEN) -> tuple[grpc.StatusCode, bytes]:
    """Send `chunks` through one Tunnel call; return its status and every byte the worker answered."""
    worker = RemoteWorker(server.target, token=token)

    async def requests() -> AsyncIterator[pb.Chunk]:
        for chunk in chunks:
            yield pb.Chunk(data=chunk)

    call = worker.tunnel(requests())
    got = b""
    try:
        async for reply in call:
            got += reply.data
        code = await call.code()
    except grpc.aio.AioRpcError as exc:
        code = exc.code()
    finally:
        await worker.close()
    return code, got


def replies(data: bytes) -> list[bytes]:
    out = []
    while data:
        (size,) = struct.unpack_from("<Q", data)
        out.append(data[8 : 8 + size])
        data = data[8 + size :]
    return out


@pytest.fixture
async def server(rpc_server: RpcFactory) -> RpcServer:
    return await rpc_server(max_frame=MAX_FRAME)


async def test_valid_session_reaches_the_worker(server: RpcServer) -> None:
    code, data = await tunnel(server, [HELLO, DEVICE_COUNT])
    assert code == grpc.StatusCode.OK
    hello, count = replies(data)
    assert hello[:3] == bytes((7, 0, 0)) and hello[4:] == bytes(24)  # no transport upgrade offered back
    assert struct.unpack("<I", count) == (1,)
    stats = server.service.stats.snapshot()
    assert stats.worker_connections == 1 and stats.commands == {"HELLO": 1, "DEVICE_COUNT": 1}


@pytest.mark.parametrize("token", [None, "not-the-token"], ids=["missing", "wrong"])
async def test_token_required(server: RpcServer, token: str | None) -> None:
    # No message at all: a refused call must not depend on what the client sends (a client writing on
    # after the refusal sees its own write fail instead of the server's status).
    code, data = await tunnel(server, [], token=token)
    assert code == grpc.StatusCode.UNAUTHENTICATED and data == b""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await RemoteWorker(server.target, token=token).capabilities()
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    stats = server.service.stats.snapshot()
    assert stats.worker_connections == 0 and stats.tunnels_rejected == 2


MALFORMED_FIRST = {
    "unknown command": bytes((99,)) + (0).to_bytes(8, "little"),
    "no HELLO first": DEVICE_COUNT,
    "HELLO of the wrong size": encode_request(RpcCommand.HELLO, bytes(23)),
    "oversize frame": bytes((RpcCommand.HELLO,)) + (MAX_FRAME + 1).to_bytes(8, "little"),
}


@pytest.mark.parametrize("stream", MALFORMED_FIRST.values(), ids=MALFORMED_FIRST.keys())
async def test_malformed_stream_never_touches_the_worker(server: RpcServer, stream: bytes) -> None:
    # The bad header arrives split across two messages, the second being the last one (see above).
    code, data = await tunnel(server, [stream[:4], stream[4:]])
    assert code == grpc.StatusCode.INVALID_ARGUMENT and data == b""
    assert server.service.stats.snapshot().worker_connections == 0  # not even connected to
    assert (await tunnel(server, [HELLO, DEVICE_COUNT]))[0] == grpc.StatusCode.OK  # and it still serves


MALFORMED_LATER = {
    "unknown command": bytes((42,)) + (0).to_bytes(8, "little"),
    "second HELLO": HELLO,
    "fixed-size command of the wrong size": encode_request(RpcCommand.GET_DEVICE_MEMORY, bytes(3)),
    "oversize SET_TENSOR": bytes((RpcCommand.SET_TENSOR,)) + (MAX_FRAME + 1).to_bytes(8, "little"),
}


@pytest.mark.parametrize("bad", MALFORMED_LATER.values(), ids=MALFORMED_LATER.keys())
async def test_malformed_frame_is_not_forwarded(server: RpcServer, bad: bytes) -> None:
    # Valid frames, then a bad one in the same message: the stream ends without the bad frame.
    code, _ = await tunnel(server, [HELLO, DEVICE_COUNT + bad + DEVICE_COUNT])
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    stats = server.service.stats.snapshot()
    assert stats.tunnels_rejected == 1 and stats.bytes_to_worker == len(HELLO)  # nothing of the bad message
    # The worker dropped that session cleanly and serves the next one.
    code, data = await tunnel(server, [HELLO, DEVICE_COUNT])
    assert code == grpc.StatusCode.OK and len(replies(data)) == 2
    assert server.worker.running and server.worker.restarts == 0


async def test_idle_tunnel_outlives_keepalive_pings(rpc_server: RpcFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """llama-server idles between requests for hours; the coordinator's keepalive pings must not make the
    rpc-server answer GOAWAY "too_many_pings" (gRPC's default), which would break the tunnel."""
    import asyncio

    import olol.rpc.server
    import olol.split.workers
    from olol.ggml import options

    scale = options.KEEPALIVE_MS // 150  # the production settings, 200 times faster

    def scaled(opts: list[tuple[str, int]]) -> list[tuple[str, int]]:
        timing = ("keepalive_time_ms", "keepalive_timeout_ms", "min_recv_ping_interval_without_data_ms")
        return [(k, v // scale if k.endswith(timing) else v) for k, v in opts]

    monkeypatch.setattr(olol.rpc.server, "SERVER_OPTIONS", scaled(options.SERVER_OPTIONS))
    monkeypatch.setattr(olol.split.workers, "CHANNEL_OPTIONS", scaled(options.CHANNEL_OPTIONS))
    server = await rpc_server()
    worker = RemoteWorker(server.target, token=TOKEN)
    outbox: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def requests() -> AsyncIterator[pb.Chunk]:
        while (data := await outbox.get()) is not None:
            yield pb.Chunk(data=data)

    call = worker.tunnel(requests())
    try:
        await outbox.put(HELLO)
        hello = await call.read()
        assert isinstance(hello, pb.Chunk) and len(hello.data) == 36
        await asyncio.sleep(2.0)  # ~13 keepalive periods without data
        await outbox.put(DEVICE_COUNT)
        count = await call.read()
        assert isinstance(count, pb.Chunk) and len(count.data) == 12
    finally:
        await outbox.put(None)
        call.cancel()
        await worker.close()
