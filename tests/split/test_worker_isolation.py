"""The real ggml worker behind an rpc-server: no other local process can hold it or speak ggml RPC to it,
and a tunnel client that hangs up mid-command never kills it (issue 20).

On main before this (the worker on the host's 127.0.0.1), a local process that connected to the worker's
port first got its HELLO answered and held the worker's only connection, so tunnel sessions waited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import struct
import sys

import grpc
import pytest

from olol._fast.framing import RpcCommand, encode_request
from olol.errors import BackendUnavailable
from olol.rpc import isolation
from olol.rpc.ggml_client import GGML_TYPE_I8, GgmlClient, RpcTensor
from olol.rpc.server import RpcServer
from olol.rpc.worker import WorkerConfig, isolation_wanted
from olol.split.workers import RemoteWorker
from tests.split.conftest import TOKEN, DistFactory, RpcFactory
from tests.split.test_data_port import fresh_ticket, stream
from tests.split.test_tunnel_security import DEVICE_COUNT, HELLO, replies, tunnel

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform != "linux", reason="network namespaces")]

REPLY_BYTES = 16 << 20  # a GET_TENSOR reply far beyond socket buffers: the worker is mid-send when the client goes


def intruder(port: int) -> socket.socket | None:
    """A local process's connection to the worker's port, holding it and asking for a HELLO (None: refused)."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=2)
    except OSError:
        return None
    sock.sendall(HELLO)
    return sock


def answered(sock: socket.socket) -> bytes:
    sock.settimeout(1.0)
    try:
        return sock.recv(64)
    except (TimeoutError, OSError):
        return b""


async def one_session(server: RpcServer, path: str) -> int:
    """HELLO and DEVICE_COUNT through the tunnel (gRPC messages or the data port): the device count."""
    if path == "grpc":
        code, data = await tunnel(server, [HELLO, DEVICE_COUNT])
        assert code == grpc.StatusCode.OK
    else:
        data = await stream(server, HELLO + DEVICE_COUNT)
    hello, count = replies(data)
    assert hello[:3] == bytes((7, 0, 0))
    return int(struct.unpack("<I", count)[0])


@pytest.mark.parametrize("path", ["grpc", "stream"])
async def test_a_local_process_cannot_hold_or_talk_to_the_worker(rpc_server: RpcFactory, path: str) -> None:
    server = await rpc_server()
    assert server.worker.isolated
    sock = await asyncio.to_thread(intruder, server.worker.port)
    try:
        # The intruder connected first (if it could connect at all): a coordinator's session still gets through.
        assert await asyncio.wait_for(one_session(server, path), 15) == 1
        if sock is not None:
            assert await asyncio.to_thread(answered, sock) == b""  # and never a ggml reply for the intruder
        assert await asyncio.wait_for(one_session(server, path), 15) == 1
    finally:
        if sock is not None:
            sock.close()


def _abrupt_get_tensor(data_port: int, ticket: bytes) -> None:
    """Through the data port: allocate a buffer, ask for 16 MiB of it back, and reset the connection while the
    worker is sending it."""
    sock = socket.create_connection(("127.0.0.1", data_port), timeout=10)
    sock.sendall(ticket)
    client = GgmlClient("127.0.0.1", data_port, timeout=10, sock=sock)
    client.hello()
    buffer, _ = client.alloc_buffer(0, REPLY_BYTES)
    base = client.buffer_base(buffer)
    n = REPLY_BYTES
    tensor = RpcTensor(1, GGML_TYPE_I8, buffer, (n, 1, 1, 1), (1, n, n, n), base)
    sock.sendall(encode_request(RpcCommand.GET_TENSOR, tensor.pack() + struct.pack("<QQ", 0, REPLY_BYTES)))
    sock.recv(4096)  # the reply is under way
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # RST, mid-reply


@pytest.mark.parametrize("isolate", [True, False], ids=["isolated", "host-loopback"])
async def test_a_client_leaving_mid_command_never_kills_the_worker(rpc_server: RpcFactory, isolate: bool) -> None:
    server = await rpc_server(worker={"isolate": isolate})
    assert server.worker.isolated is isolate and server.data_port is not None
    pid = server.worker.pid
    for _ in range(12):  # on d9d1e00 one try in 20-30 killed the worker with SIGPIPE
        await asyncio.to_thread(_abrupt_get_tensor, server.data_port.port, await fresh_ticket(server))
        # The next session is served by the same worker, which freed the last one's buffer.
        assert await asyncio.wait_for(one_session(server, "stream"), 15) == 1
    assert server.worker.pid == pid and server.worker.restarts == 0 and server.worker.running


async def test_where_no_namespace_can_be_made_the_worker_runs_on_loopback_with_a_warning(
    rpc_server: RpcFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    refuse = "import socket, sys; socket.socket(fileno=int(sys.argv[1])).send(b'Nunshare: [Errno 1] not permitted')"
    monkeypatch.setattr(isolation, "gate_command", lambda: [sys.executable, "-c", refuse])
    with caplog.at_level(logging.WARNING, logger="olol.rpc.worker"):
        server = await rpc_server()
    assert not server.worker.isolated
    warnings = [r.getMessage() for r in caplog.records if "NOT isolated" in r.getMessage()]
    assert len(warnings) == 1 and "unshare: [Errno 1] not permitted" in warnings[0]
    assert await one_session(server, "stream") == 1
    with contextlib.closing(socket.create_connection(("127.0.0.1", server.worker.port), timeout=5)):
        pass  # the old exposure, which the warning names


def test_only_a_loopback_worker_is_isolated() -> None:
    """--worker-host beyond loopback is the deliberate exposure of --transport direct: the host's network."""
    assert isolation_wanted(WorkerConfig()) and isolation_wanted(WorkerConfig(host="localhost"))
    assert not isolation_wanted(WorkerConfig(host="0.0.0.0")) and not isolation_wanted(WorkerConfig(host="10.1.2.3"))
    assert not isolation_wanted(WorkerConfig(isolate=False))


async def test_direct_transport_to_an_isolated_worker_says_how_to_expose_it(
    rpc_server: RpcFactory, dist: DistFactory
) -> None:
    server = await rpc_server()
    remote = RemoteWorker(server.target, token=TOKEN)
    try:
        assert (await remote.capabilities()).direct_endpoint == ""  # nothing outside its namespace can dial it
    finally:
        await remote.close()
    with pytest.raises(BackendUnavailable, match="--no-worker-isolation"):
        await dist([server], transport="direct")


async def test_a_crashed_isolated_worker_is_restarted_in_a_fresh_namespace(rpc_server: RpcFactory) -> None:
    server = await rpc_server()
    old = server.worker.pid
    assert old is not None and server.worker.isolated
    os.kill(old, signal.SIGKILL)  # the ggml-rpc-server itself, as a crash would: its gate exits with it
    async with asyncio.timeout(30):
        while server.worker.restarts == 0:
            await asyncio.sleep(0.05)
    assert await server.worker.wait_running(5) and server.worker.isolated and server.worker.pid != old
    assert await asyncio.wait_for(one_session(server, "stream"), 15) == 1
