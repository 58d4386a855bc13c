"""Layer planner, balanced (min-max) objective: feasibility, optimality against brute force, tie-breaks, errors."""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from olol._fast._plan_types import Host, Plan, PlanError
from tests.fast.conftest import both, needs_compiled

Planner = Callable[..., Plan]


@pytest.fixture(scope="module")
def balanced(binpack: ModuleType) -> Planner:
    """plan_layers with the min-max objective, which this module specifies (see test_binpack_latency)."""
    return functools.partial(binpack.plan_layers, objective="balanced")


GIB = 1 << 30
MIB = 1 << 20


def check_plan(plan: Plan, n_layers: int, mem: list[int], caps: list[int]) -> None:
    """Feasible, contiguous, complete, output on the last host used."""
    assert sum(plan.tensor_split) == n_layers + 1
    position = 0
    for assignment, cap in zip(plan.assignments, caps, strict=True):
        assert assignment.start == min(position, n_layers)
        position += assignment.layers
        assert assignment.memory_bytes <= cap
    assert position == n_layers + 1
    holders = [a for a in plan.assignments if a.layers]
    assert holders[-1].output and not any(a.output for a in holders[:-1])
    assert holders[-1].stop == n_layers
    assert plan.bottleneck == max(a.stage_time for a in plan.assignments)
    assert sum(a.memory_bytes for a in plan.assignments) == sum(mem)


def brute_force(
    mem: list[int], work: list[int], caps: list[int], speeds: list[float]
) -> tuple[float, int, float] | None:
    """Least (bottleneck, hosts used, total time) over every contiguous split, or None."""
    n, best = len(mem), None
    pm = [0, *itertools.accumulate(mem)]
    pw = [0, *itertools.accumulate(work)]
    for cuts in itertools.combinations_with_replacement(range(n + 1), len(caps) - 1):
        bounds = [0, *cuts, n]
        ranges = list(itertools.pairwise(bounds))
        if any(pm[j] - pm[i] > cap for (i, j), cap in zip(ranges, caps, strict=True)):
            continue
        stages = [(pw[j] - pw[i]) / s for (i, j), s in zip(ranges, speeds, strict=True)]
        total = 0.0
        for (i, j), stage in zip(ranges, stages, strict=True):
            if j > i:
                total += stage
        key = (max(stages), sum(1 for i, j in ranges if j > i), total)
        best = key if best is None or key < best else best
    return best


speeds = st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0])


@st.composite
def instances(draw: st.DrawFn, max_layers: int = 6, max_hosts: int = 4) -> dict[str, object]:
    n_layers = draw(st.integers(0, max_layers))
    return {
        "n_layers": n_layers,
        "layer_bytes": draw(st.lists(st.integers(0, 100), min_size=n_layers, max_size=n_layers)),
        "output_bytes": draw(st.integers(0, 150)),
        "kv_bytes_per_layer": draw(st.integers(0, 20)),
        "hosts": [
            Host(f"h{i}", draw(st.integers(0, 600)), draw(speeds)) for i in range(draw(st.integers(1, max_hosts)))
        ],
        "margin": draw(st.sampled_from([0.0, 0.1, 0.25])),
    }


def flatten(case: dict[str, object]) -> tuple[list[int], list[int], list[int], list[float]]:
    layers: list[int] = case["layer_bytes"]  # type: ignore[assignment]
    kv: int = case["kv_bytes_per_layer"]  # type: ignore[assignment]
    out: int = case["output_bytes"]  # type: ignore[assignment]
    hosts: list[Host] = case["hosts"]  # type: ignore[assignment]
    margin: float = case["margin"]  # type: ignore[assignment]
    return (
        [b + kv for b in layers] + [out],
        [*layers, out],
        [math.floor(h.free_bytes * (1 - margin)) for h in hosts],
        [h.speed for h in hosts],
    )


@settings(max_examples=250, deadline=None)
@given(case=instances())
def test_matches_brute_force(balanced: Planner, case: dict[str, object]) -> None:
    mem, work, caps, host_speeds = flatten(case)
    expected = brute_force(mem, work, caps, host_speeds)
    if expected is None:
        with pytest.raises(PlanError):
            balanced(**case)
        return
    plan = balanced(**case)
    check_plan(plan, case["n_layers"], mem, caps)  # type: ignore[arg-type]
    total = 0.0
    for a in plan.assignments:
        if a.layers:
            total += a.stage_time
    assert (plan.bottleneck, len(plan.used_hosts), total) == expected


@settings(max_examples=150, deadline=None)
@given(case=instances(max_layers=5, max_hosts=3))
def test_last_host_shortfall_is_exact(balanced: Planner, case: dict[str, object]) -> None:
    case["margin"] = 0.0
    try:
        balanced(**case)
    except PlanError as err:
        hosts: list[Host] = case["hosts"]  # type: ignore[assignment]
        mem, _, caps, _ = flatten(case)
        assert err.shortfall > 0
        if err.host is None:
            assert err.shortfall == sum(mem) - sum(caps)
        elif str(err).startswith("host "):
            assert err.host == hosts[-1].name
            last = hosts[-1]
            for extra, fits in ((err.shortfall - 1, False), (err.shortfall, True)):
                grown = {**case, "hosts": [*hosts[:-1], last._replace(free_bytes=last.free_bytes + extra)]}
                try:
                    balanced(**grown)
                    assert fits
                except PlanError:
                    assert not fits


def test_balances_equal_hosts(balanced: Planner) -> None:
    hosts = [Host(f"h{i}", 100 * GIB, 1.0) for i in range(4)]
    plan = balanced(32, 200 * MIB, 200 * MIB, 10 * MIB, hosts)
    assert max(plan.tensor_split) == 9 and sum(plan.tensor_split) == 33
    assert plan.bottleneck == 9 * 200 * MIB


def test_faster_host_gets_more(balanced: Planner) -> None:
    plan = balanced(30, 100, 100, 0, [Host("fast", 10**6, 2.0), ("slow", 10**6, 1.0)], margin=0)
    assert plan.tensor_split == (21, 10)
    assert plan.tensor_split_arg() == "21,10"
    assert plan.bottleneck == 1050.0


def test_memory_caps_the_fast_host(balanced: Planner) -> None:
    hosts = [Host("fast-small", 10 * GIB, 4.0), Host("slow-big", 64 * GIB, 1.0)]
    plan = balanced(32, GIB, GIB, 0, hosts, margin=0.1)
    assert plan.tensor_split == (9, 24)  # 9 GiB fits in 10 GiB less 10%, 10 would not
    a, b = plan.assignments
    assert (a.start, a.stop, a.output) == (0, 9, False)
    assert (b.start, b.stop, b.output) == (9, 32, True)


def test_output_goes_to_last_host_that_gets_layers(balanced: Planner) -> None:
    hosts = [Host("a", 1000, 1.0), Host("b", 1000, 1.0), Host("full", 0, 5.0)]
    plan = balanced(4, 100, 100, 0, hosts, margin=0)
    assert plan.tensor_split == (3, 2, 0)
    assert plan.assignments[1].output and plan.used_hosts == ("a", "b")


def test_ties_prefer_fewer_hosts_then_earlier_hosts(balanced: Planner) -> None:
    # The output layer alone sets the bottleneck, so it needs a host to itself; the blocks
    # fit on any one host. Two hosts suffice, and of those splits the earliest hosts win.
    hosts = [Host("a", 1000, 1.0), Host("b", 1000, 1.0), Host("c", 1000, 1.0)]
    plan = balanced(4, 1, 100, 0, hosts, margin=0)
    assert plan.tensor_split == (4, 1, 0)
    assert plan.bottleneck == 100.0


def test_per_layer_sizes(balanced: Planner) -> None:
    plan = balanced(3, [10, 20, 30], 5, [1, 2, 3], [("a", 100, 1.0)], margin=0)
    assert plan.assignments[0].memory_bytes == 10 + 20 + 30 + 1 + 2 + 3 + 5
    assert plan.tensor_split == (4,)


def test_no_layers_is_just_the_output(balanced: Planner) -> None:
    assert balanced(0, [], 5, 0, [Host("a", 10, 1.0), Host("b", 10, 1.0)]).tensor_split == (1, 0)


def test_errors_name_the_short_host(balanced: Planner) -> None:
    hosts = [Host("a", 4 * GIB, 1.0), Host("b", 4 * GIB, 1.0)]
    with pytest.raises(PlanError, match=r"cluster is short by 3\.80 GiB") as info:
        balanced(10, GIB, GIB, 0, hosts, margin=0.1)
    assert info.value.host is None and info.value.shortfall == 11 * GIB - 2 * math.floor(4 * GIB * 0.9)

    with pytest.raises(PlanError, match=r"the output layer needs 5\.00 GiB but the largest host, b,") as info:
        balanced(2, GIB, 5 * GIB, 0, [Host("a", 4 * GIB, 1.0), Host("b", 4 * GIB + 1, 1.0)], margin=0)
    assert info.value.host == "b" and info.value.shortfall == GIB - 1

    # 3 GiB + 3 GiB + 2 GiB of output fit 9 GiB in total, but not in order:
    # a holds layer 0, so b must hold layer 1 and the output.
    with pytest.raises(PlanError, match=r"host b is short by 1\.00 GiB: as the last host it must hold layer 1 and"):
        balanced(2, 3 * GIB, 2 * GIB, 0, [Host("a", 5 * GIB, 1.0), Host("b", 4 * GIB, 1.0)], margin=0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layer_bytes": [1, 2]}, "layer_bytes has 2 entries for 3 layers"),
        ({"kv_bytes_per_layer": [-1, 0, 0]}, "must not be negative"),
        ({"hosts": []}, "no hosts"),
        ({"hosts": [Host("a", 10, 0.0)]}, "speed must be a positive number"),
        ({"hosts": [Host("a", -1, 1.0)]}, "free_bytes must not be negative"),
        ({"margin": 1.0}, "margin"),
        ({"output_bytes": -5}, "output_bytes"),
        ({"objective": "fastest"}, "objective must be one of latency, balanced"),
        ({"hop_cost": -1.0}, "hop_cost"),
        ({"hop_cost": math.nan}, "hop_cost"),
        ({"hosts": [Host("a", 10, 1.0)] * 2, "groups": ["x"]}, "groups has 1 entries for 2 hosts"),
        ({"hosts": [Host("a", 10, 1.0)] * 3, "groups": ["x", "y", "x"]}, "group 'x' must be adjacent"),
    ],
)
def test_bad_inputs(binpack: ModuleType, kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "n_layers": 3,
        "layer_bytes": 1,
        "output_bytes": 1,
        "kv_bytes_per_layer": 0,
        "hosts": [Host("a", 10, 1.0)],
        "margin": 0.0,
    }
    with pytest.raises(ValueError, match=message):
        binpack.plan_layers(**{**args, **kwargs})


@needs_compiled("binpack")
@settings(max_examples=60, deadline=None)
@given(case=instances(max_layers=80, max_hosts=10))
def test_compiled_matches_twin(case: dict[str, object]) -> None:
    twin, compiled = both("binpack")
    outcomes = []
    for module in (twin, compiled):
        try:
            outcomes.append(module.plan_layers(**case, objective="balanced"))
        except PlanError as err:
            outcomes.append((str(err), err.host, err.shortfall))
    assert outcomes[0] == outcomes[1]
