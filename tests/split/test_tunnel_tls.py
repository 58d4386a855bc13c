"""The tunnel over mutual TLS: the split model is served through it, and peers without the right
certificate are refused."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path

import grpc
import pytest

from olol.security.certs import create_ca, issue_host_cert
from olol.security.tls import TlsFiles
from olol.split.workers import RemoteWorker
from tests.split.conftest import TOKEN, DistFactory, RpcFactory, complete
from tests.split.test_tunnel_security import HELLO

pytestmark = pytest.mark.slow


async def test_split_model_over_mutual_tls(
    rpc_server: RpcFactory, dist: DistFactory, tmp_path: Path, baseline_text: str
) -> None:
    ca = create_ca(tmp_path / "ca")
    host = issue_host_cert(ca, "127.0.0.1", tmp_path / "worker")
    coordinator_cert = issue_host_cert(ca, "coordinator", tmp_path / "coordinator")
    server = await rpc_server(tls=TlsFiles(host.cert, host.key, ca.cert))
    client_tls = TlsFiles(coordinator_cert.cert, coordinator_cert.key, ca.cert)

    coordinator = await dist([server], tls=client_tls)
    assert await complete(coordinator.url) == baseline_text
    assert server.service.stats.snapshot().tunnels_total > 0
    # The ggml bytes went over the data port, which speaks TLS like the gRPC service.
    assert [t.data_path for t in coordinator.tunnels.values()] == ["stream"]
    assert server.data_port is not None and server.data_port.tls
    worker = RemoteWorker(server.target, token=TOKEN, tls=client_tls)
    ticket = await worker.open_stream()
    await worker.close()
    assert ticket.tls and ticket.port == server.data_port.port
    connections = server.service.stats.snapshot().worker_connections
    # A plaintext client holding a valid ticket gets nowhere: its bytes are not a TLS handshake.
    reader, writer = await asyncio.open_connection("127.0.0.1", ticket.port)
    writer.write(ticket.ticket + HELLO)
    with contextlib.suppress(ConnectionError):
        assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()
    # Nor does a TLS client without a client certificate.
    no_cert = ssl.create_default_context(cafile=str(ca.cert))
    # TLS 1.3: closed once the server sees no cert.
    with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
        reader, writer = await asyncio.open_connection("127.0.0.1", ticket.port, ssl=no_cert)
        writer.write(ticket.ticket + HELLO)
        await asyncio.wait_for(reader.readexactly(1), 10)
    assert server.service.stats.snapshot().worker_connections == connections

    refused = {
        "plaintext": RemoteWorker(server.target, token=TOKEN),
        "no client certificate": RemoteWorker(server.target, token=TOKEN, tls=TlsFiles(ca=ca.cert)),
    }
    for what, worker in refused.items():
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await worker.capabilities(timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, what
        await worker.close()
