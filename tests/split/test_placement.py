"""The emitted --tensor-split places layers exactly as planned, by llama-server's own report."""

from __future__ import annotations

import re

import pytest

from olol.split.coordinator import Coordinator
from tests.split.conftest import DistFactory, RpcFactory

pytestmark = pytest.mark.slow

MIB = 1 << 20
_ASSIGNED = re.compile(r"load_tensors: layer +(\d+) assigned to device RPC(\d+)")
_BUFFER = re.compile(r"(model|KV) buffer size = +([\d.]+) MiB")
_ENDPOINT = re.compile(r"RPC\d+\[([^\]]+)\]")


@pytest.mark.parametrize("transport", ["tunnel", "direct"])
async def test_layers_land_where_planned(rpc_server: RpcFactory, dist: DistFactory, transport: str) -> None:
    # Room for two blocks on each of the first two workers: the plan must be (2, 2, 1).
    worker = {"isolate": transport != "direct"}  # same-host direct dials the workers on the host's loopback
    servers = [await rpc_server(memory_limit=int(2.5 * MIB), worker=worker) for _ in range(2)]
    servers.append(await rpc_server(worker=worker))
    coordinator = await dist(servers, transport=transport, verbosity=5, log_lines=5000)
    plan = coordinator.plan
    assert plan is not None
    assert plan.tensor_split == (2, 2, 1)
    assert_placed_as_planned(coordinator, [0, 0, 1, 1, 2])


async def test_reordered_plan_lands_where_planned(rpc_server: RpcFactory, dist: DistFactory) -> None:
    # The first worker holds the output layer (15.6 MiB) and two blocks, not all four; the second only two
    # blocks, not the output layer. In the order given no plan fits; by latency the first worker goes last.
    big, small = await rpc_server(memory_limit=20 * MIB), await rpc_server(memory_limit=int(2.5 * MIB))
    coordinator = await dist([big, small], objective="latency", verbosity=5, log_lines=5000)
    plan = coordinator.plan
    assert plan is not None
    assert plan.used_addresses == (small.target, big.target) and plan.tensor_split == (2, 3)
    assert plan.assignment(plan.devices[1]).output
    assert_placed_as_planned(coordinator, [0, 0, 1, 1, 1])


def assert_placed_as_planned(coordinator: Coordinator, layer_devices: list[int]) -> None:
    """llama-server's own log: each layer on the device planned, each worker's buffers what it was given."""
    plan = coordinator.plan
    assert plan is not None and coordinator.process is not None
    log = coordinator.process.log_tail(5000).splitlines()

    # llama-server loads twice at start (a memory dry run, then for real); the last report is the one used.
    assigned: dict[int, int] = {}
    for line in log:
        if m := _ASSIGNED.search(line):
            assigned[int(m[1])] = int(m[2])
    assert [assigned[i] for i in range(len(assigned))] == plan.layer_devices() == layer_devices

    # Each worker's buffers hold what the plan gave it: weights, and KV for its blocks only.
    by_endpoint = {coordinator.endpoints[d.address]: plan.assignment(d) for d in plan.devices}
    seen: dict[tuple[str, str], float] = {}
    for line in log:
        if (size := _BUFFER.search(line)) and (where := _ENDPOINT.search(line)):
            seen[(where[1], size[1])] = float(size[2]) * MIB
    kv_per_block = plan.profile.kv_bytes_per_layer[0]
    for endpoint, a in by_endpoint.items():
        blocks = a.stop - a.start
        weights = a.memory_bytes - blocks * kv_per_block
        assert seen[(endpoint, "model")] == pytest.approx(weights, rel=0.01, abs=0.01 * MIB)
        assert seen.get((endpoint, "KV"), 0.0) == pytest.approx(blocks * kv_per_block, abs=0.01 * MIB)
