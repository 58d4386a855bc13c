"""The tunnel over mutual TLS: the split model is served through it, and peers without the right
certificate are refused."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from olol.dist.workers import RemoteWorker
from olol.security.certs import create_ca, issue_host_cert
from olol.security.tls import TlsFiles
from tests.dist.conftest import TOKEN, DistFactory, RpcFactory, complete

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

    refused = {
        "plaintext": RemoteWorker(server.target, token=TOKEN),
        "no client certificate": RemoteWorker(server.target, token=TOKEN, tls=TlsFiles(ca=ca.cert)),
    }
    for what, worker in refused.items():
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await worker.capabilities(timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, what
        await worker.close()
