"""LayerPlanner: workers' memory and speed -> contiguous layer ranges and llama-server arguments, by latency
(the default) or balanced."""

from __future__ import annotations

from pathlib import Path

import pytest

from olol.split.planner import DEFAULT_HOP_COST, DistPlan, LayerPlanner, PlanError
from olol.split.profile import ModelProfile
from olol.split.workers import WorkerInfo

MIB = 1 << 20
GIB = 1 << 30


def model(n_layers: int = 32, layer: int = 200 * MIB, output: int = 500 * MIB, kv: int = 16 * MIB) -> ModelProfile:
    return ModelProfile(
        path=Path("m.gguf"),
        architecture="llama",
        n_layers=n_layers,
        layer_bytes=(layer,) * n_layers,
        output_bytes=output,
        kv_bytes_per_layer=(kv,) * n_layers,
        embedding_bytes=output,
        n_ctx=4096,
        kv_type="f16",
    )


def worker(address: str, free: int, speed: float = 0.0, device: int = 0) -> WorkerInfo:
    return WorkerInfo(address, device, f"dev{device}", free, free, speed, f"{address}-ggml", "host")


BALANCED = LayerPlanner(margin=0.1, objective="balanced")  # the min-max objective: stages as even as can be


def blocks(plan: DistPlan) -> list[int]:
    return [a.stop - a.start for a in plan.plan.assignments]


def test_memory_bound_fills_small_hosts_only_as_far_as_they_fit() -> None:
    m = model()  # 32 x (200 + 16) MiB + 500 MiB output = ~7.25 GiB
    hosts = [worker("a:1", 2 * GIB), worker("b:1", 2 * GIB), worker("c:1", 8 * GIB)]
    plan = BALANCED.plan(m, hosts)
    for d in plan.devices:
        assert plan.assignment(d).memory_bytes <= d.free_bytes * 0.9
    assert sum(plan.tensor_split) == m.n_layers + 1
    assert plan.plan.assignments[-1].output  # the output layer sits on the last host used
    # Equal speeds would put ~11 of the 33 items on each; the small hosts hold 8 blocks (1.69 of their
    # 1.8 GiB usable), so the big one takes the rest.
    assert blocks(plan) == [8, 8, 16]


def test_speed_bound_gives_faster_hosts_more_layers() -> None:
    m = model(output=200 * MIB)
    plan = BALANCED.plan(m, [worker("fast:1", 64 * GIB, speed=30e9), worker("slow:1", 64 * GIB, speed=10e9)])
    fast, slow = plan.plan.assignments
    assert fast.layers == 3 * slow.layers or abs(fast.stage_time - slow.stage_time) / fast.stage_time < 0.1
    assert fast.layers > 2 * slow.layers


def test_heterogeneous_memory_and_speed() -> None:
    # A fast host short of memory, a slow one with plenty: the fast one is filled to its memory, not beyond.
    m = model()
    fast_free = 3 * GIB
    plan = BALANCED.plan(m, [worker("gpu:1", fast_free, speed=50e9), worker("cpu:1", 64 * GIB, 5e9)])
    gpu, cpu = plan.plan.assignments
    assert gpu.memory_bytes <= fast_free * 0.9
    assert gpu.layers == int(fast_free * 0.9 // (216 * MIB))  # as many blocks as fit
    assert cpu.output and gpu.layers + cpu.layers == 33


def test_unused_workers_get_no_rpc_endpoint_and_no_split_entry() -> None:
    m = model(n_layers=4, layer=MIB, output=16 * MIB, kv=0)
    plan = BALANCED.plan(m, [worker("a:1", GIB), worker("b:1", GIB), worker("c:1", GIB)])
    # One stage can hold every block, the output layer is the slowest stage anyway: two hosts, not three.
    assert plan.tensor_split == (4, 1) and len(plan.used_addresses) == 2
    args = plan.llama_args({d.address: d.direct_endpoint for d in plan.devices})
    rpc = args[args.index("--rpc") + 1].split(",")
    assert rpc == [f"{a}-ggml" for a in plan.used_addresses]
    assert args[args.index("--tensor-split") + 1] == ",".join(map(str, plan.tensor_split))
    assert args[args.index("-ngl") + 1] == "999" and args[args.index("--fit") + 1] == "off"
    assert plan.layer_devices() == [0, 0, 0, 0, 1]


def test_multi_device_worker_lists_every_device_of_its_endpoint() -> None:
    m = model(n_layers=8, layer=GIB, output=GIB, kv=0)
    devices = [worker("two:1", 5 * GIB, device=0), worker("two:1", 5 * GIB, device=1), worker("one:1", 5 * GIB)]
    plan = LayerPlanner(margin=0.0, objective="balanced").plan(m, devices)
    assert plan.used_addresses == ("two:1", "one:1")
    assert len(plan.tensor_split) == 3 and sum(plan.tensor_split) == 9
    assert [d.name for d in plan.devices] == ["two:1", "two:1#1", "one:1"]


def test_unknown_speeds_count_as_the_median_known_one() -> None:
    m = model(n_layers=12, output=200 * MIB)
    plan = BALANCED.plan(m, [worker("a:1", 64 * GIB, 20e9), worker("b:1", 64 * GIB, 0.0)])
    a, b = plan.plan.assignments
    assert abs(a.layers - b.layers) <= 1  # b is taken to be as fast as a
    assert plan.seconds_per_token is None  # but its time is a guess


def test_infeasible_names_the_host_that_is_short() -> None:
    m = model()
    with pytest.raises(PlanError) as caught:
        LayerPlanner(margin=0.1).plan(m, [worker("a:1", GIB), worker("b:1", GIB)])
    assert caught.value.host is None and "cluster is short" in str(caught.value)
    with pytest.raises(PlanError) as caught:
        # Plenty in total, but the output layer fits on no host.
        hosts = [worker("a:1", 5 * GIB), worker("b:1", 5 * GIB), worker("c:1", 5 * GIB)]
        LayerPlanner(margin=0.1).plan(model(output=5 * GIB), hosts)
    assert caught.value.host == "a:1" and "output layer" in str(caught.value)
    assert caught.value.shortfall == 5 * GIB - int(5 * GIB * 0.9)
    with pytest.raises(PlanError, match="no rpc-server"):
        LayerPlanner().plan(m, [])


def rpc_and_split(plan: DistPlan) -> tuple[list[str], list[int]]:
    args = plan.llama_args({d.address: d.direct_endpoint for d in plan.devices})
    rpc = args[args.index("--rpc") + 1].split(",")
    return rpc, [int(n) for n in args[args.index("--tensor-split") + 1].split(",")]


def test_latency_keeps_a_model_on_the_fast_worker_when_it_fits() -> None:
    # The measured case: workers of 43.5 and 19.9 GB/s with equal memory, a model of 8 blocks + output.
    # Stages run one after the other, so the slow worker's share only adds time (and a round trip).
    m = model(n_layers=8, layer=45 * MIB, output=125 * MIB, kv=MIB)
    devices = [worker("fast:1", 4 * GIB, 43.5e9), worker("slow:1", 4 * GIB, 19.9e9)]
    plan = LayerPlanner().plan(m, devices)
    assert plan.plan.objective == "latency" and plan.tensor_split == (9,)
    assert rpc_and_split(plan) == (["fast:1-ggml"], [9])
    assert plan.plan.latency == pytest.approx((8 * 45 + 125) * MIB / 43.5e9 + DEFAULT_HOP_COST)
    assert plan.seconds_per_token == plan.plan.latency
    balanced = BALANCED.plan(m, devices)
    assert balanced.tensor_split == (8, 1) and balanced.plan.latency > plan.plan.latency


def test_hop_cost_is_in_seconds() -> None:
    # 1 ms of round trip is more than the slow worker's two blocks save (9.2 ms vs 4.2 ms on the fast one).
    m = model(n_layers=8, layer=45 * MIB, output=125 * MIB, kv=MIB)
    devices = [worker("slow:1", 4 * GIB, 10e9), worker("fast:1", int(0.5 * GIB), 22e9)]
    assert LayerPlanner(hop_cost=1e-5).plan(m, devices).used_addresses == ("slow:1", "fast:1")
    assert LayerPlanner(hop_cost=1.0).plan(m, devices).used_addresses == ("slow:1",)


def test_reordered_plan_keeps_rpc_and_tensor_split_aligned() -> None:
    # The fast worker holds few blocks (each carries KV cache); the output layer, all weights, is worth more
    # to it, so the fast worker goes last in --rpc to hold it, though it was listed first.
    m = model(n_layers=8, layer=100 * MIB, output=400 * MIB, kv=100 * MIB)
    fast, slow = worker("fast:1", GIB, 40e9), worker("slow:1", 16 * GIB, 10e9)
    plan = LayerPlanner(margin=0.0).plan(m, [fast, slow])
    assert plan.devices == (slow, fast) and plan.plan.order == (1, 0)
    assert plan.used_addresses == ("slow:1", "fast:1")
    rpc, split = rpc_and_split(plan)
    assert rpc == ["slow:1-ggml", "fast:1-ggml"] and split == [
        plan.assignment(slow).layers,
        plan.assignment(fast).layers,
    ]
    assert plan.assignment(fast).output and plan.layer_devices()[-1] == 1  # the output layer on RPC1: fast
    assert split == [5, 4]  # fast: 3 blocks (600 MiB) + output (400 MiB) in its 1 GiB


def test_a_multi_device_worker_moves_as_a_whole() -> None:
    m = model(n_layers=8, layer=100 * MIB, output=400 * MIB, kv=100 * MIB)
    # As above, the fast worker with a second, small device: both move last, in their order. Its first
    # device holds the output layer, so the second (too small for it) must stay empty.
    two = [worker("two:1", GIB, 40e9, device=0), worker("two:1", 300 * MIB, 40e9, device=1)]
    plan = LayerPlanner(margin=0.0).plan(m, [*two, worker("one:1", 16 * GIB, 10e9)])
    assert [d.name for d in plan.devices] == ["one:1", "two:1", "two:1#1"]
    assert plan.used_addresses == ("one:1", "two:1") and plan.assignment(two[0]).output
    assert rpc_and_split(plan) == (["one:1-ggml", "two:1-ggml"], [5, 4, 0])


def test_unknown_objective_is_refused() -> None:
    with pytest.raises(ValueError, match="objective must be one of latency, balanced"):
        LayerPlanner(objective="fastest")


def test_settings_refuse_an_unknown_objective() -> None:
    from olol.split.coordinator import DistConfig
    from olol.split.settings import DistributedSettings

    assert DistConfig(servers=["a:1"], model=Path("m.gguf")).objective == "latency"
    assert DistributedSettings().objective == "latency"
    with pytest.raises(ValueError, match="objective"):
        DistConfig(servers=["a:1"], model=Path("m.gguf"), objective="fastest")
    with pytest.raises(ValueError, match="objective"):
        DistributedSettings(objective="fastest")


@pytest.mark.parametrize("transport", ["direct", "tunnel", "grpc"])
async def test_coordinator_plans_with_its_transports_hop_cost(transport: str) -> None:
    """A tunnel's relays make each worker's round trip dearer, so the coordinator's latency plans count that."""
    from olol.split.coordinator import HOP_COSTS, Coordinator, DistConfig

    coordinator = Coordinator(DistConfig(servers=["w1:50052"], model=Path("m.gguf"), transport=transport))
    try:
        assert coordinator.planner.hop_cost == HOP_COSTS[transport]
    finally:
        for w in coordinator.workers:
            await w.close()
    assert HOP_COSTS["direct"] == DEFAULT_HOP_COST < HOP_COSTS["tunnel"] < HOP_COSTS["grpc"]
