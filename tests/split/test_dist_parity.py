"""Greedy output of a model split over 2 and 3 real workers equals one llama-server's, every transport."""

from __future__ import annotations

import pytest

from tests.split.conftest import DistFactory, RpcFactory, complete

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("transport", ["tunnel", "grpc", "direct"])
@pytest.mark.parametrize("n_workers", [2, 3])
async def test_split_output_equals_single_host(
    rpc_server: RpcFactory, dist: DistFactory, baseline_text: str, transport: str, n_workers: int
) -> None:
    # Same-host --transport direct dials the workers themselves: they must be on the host's loopback.
    worker = {"isolate": transport != "direct"}
    servers = [await rpc_server(memory_limit=limit, worker=worker) for limit in LIMITS[n_workers]]
    coordinator = await dist(servers, transport=transport)
    assert coordinator.plan is not None
    assert coordinator.plan.tensor_split == {2: (4, 1), 3: (2, 2, 1)}[n_workers]
    assert sum(coordinator.plan.tensor_split) == 5  # 4 blocks + the output layer

    assert await complete(coordinator.url) == baseline_text

    if transport in ("tunnel", "grpc"):
        for tunnel in coordinator.tunnels.values():
            assert tunnel.counters.bytes_up > 0 and tunnel.counters.failures == 0
            assert tunnel.data_path == ("stream" if transport == "tunnel" else "grpc")
        # The model's traffic went through the rpc-servers, which counted it by command.
        for server in servers:
            stats = server.service.stats.snapshot()
            assert stats.commands["GRAPH_COMPUTE"] + stats.commands.get("GRAPH_RECOMPUTE", 0) >= N_TOKENS_MIN
    else:
        assert all(t.counters.connections == 0 for t in coordinator.tunnels.values())
        assert all(s.service.stats.snapshot().tunnels_total == 0 for s in servers)


N_TOKENS_MIN = 10  # a graph per generated token, at least
MIB = 1 << 20
# Memory lent per worker. The tiny model is 4 blocks of ~1.06 MiB (weights and KV at -c 512) and an
# output layer of 15.6 MiB; workers planned as equally fast get (4, 1) on two, and three are all used
# only if the first two can hold two blocks each and no more (2.5 MiB less the 10% margin).
LIMITS: dict[int, list[int | None]] = {2: [None, None], 3: [int(2.5 * MIB), int(2.5 * MIB), None]}
