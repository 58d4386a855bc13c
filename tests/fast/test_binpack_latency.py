"""Layer planner, latency objective (the default): least sum of stage times plus a round trip per host used.

Brute force enumerates host orders and every contiguous split in each, scoring plans with the same
integer costs as the search (`_plan_latency.latency_costs`), so optimality and tie-breaks compare exactly.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from olol._fast._plan_latency import LatencyCosts, group_runs, latency_costs
from olol._fast._plan_types import Host, Plan, PlanError, Problem, prepare
from tests.fast.conftest import both, needs_compiled
from tests.fast.test_binpack import instances

Key = tuple[int, int, int]  # (cost, hosts used, bottleneck)
hops = st.sampled_from([0.0, 0.5, 5.0, 60.0])


def problem_of(case: dict[str, object]) -> Problem:
    return prepare(**{k: v for k, v in case.items() if k not in ("hop_cost", "groups")})  # type: ignore[arg-type]


def check_plan(plan: Plan, problem: Problem, hop_cost: float, groups: Sequence[object] | None) -> None:
    """Feasible, contiguous in the plan's order, complete, output on the last host used, groups kept together."""
    n, names = problem.n_layers, problem.names
    assert sorted(plan.order) == list(range(len(names)))
    assert [a.host for a in plan.assignments] == [names[h] for h in plan.order]
    position = 0
    for a, h in zip(plan.assignments, plan.order, strict=True):
        assert a.start == min(position, n) and a.memory_bytes <= problem.caps[h]
        position += a.layers
    assert position == n + 1
    holders = [a for a in plan.assignments if a.layers]
    assert holders[-1].output and not any(a.output for a in holders[:-1])
    for run in group_runs(groups, len(names)):
        at = [plan.order.index(h) for h in run]
        assert at == list(range(at[0], at[0] + len(run)))  # adjacent, in their given order
    stages = [a.stage_time for a in holders]
    assert plan.bottleneck == max(stages)
    assert math.isclose(plan.latency, sum(stages) + hop_cost * len(holders))


def key_of(plan: Plan, problem: Problem, costs: LatencyCosts) -> Key:
    spent = used = peak = 0
    for a, h in zip(plan.assignments, plan.order, strict=True):
        if a.layers:
            stage = (sum(problem.work[a.start : a.stop]) + problem.work[-1] * a.output) * costs.per_byte[h]
            spent, used, peak = spent + stage + costs.hop, used + 1, max(peak, stage)
    return spent, used, peak


def brute_force(problem: Problem, costs: LatencyCosts, orders: Iterable[Sequence[int]]) -> Key | None:
    """Least key over every contiguous split of the items in every order given, or None."""
    n, best = len(problem.mem), None
    pm = [0, *itertools.accumulate(problem.mem)]
    pw = [0, *itertools.accumulate(problem.work)]
    for order in orders:
        for cuts in itertools.combinations_with_replacement(range(n + 1), len(order) - 1):
            ranges = list(itertools.pairwise([0, *cuts, n]))
            if any(pm[j] - pm[i] > problem.caps[h] for (i, j), h in zip(ranges, order, strict=True)):
                continue
            stages = [(pw[j] - pw[i]) * costs.per_byte[h] for (i, j), h in zip(ranges, order, strict=True) if j > i]
            key = (sum(stages) + costs.hop * len(stages), len(stages), max(stages))
            best = key if best is None or key < best else best
    return best


def rotations(runs: Sequence[range]) -> list[list[int]]:
    """What the search covers: the given order, and each group moved last."""
    hosts = [h for run in runs for h in run]
    return [hosts] + [[h for h in hosts if h not in run] + list(run) for run in runs]


def group_orders(runs: Sequence[range]) -> Iterable[list[int]]:
    """Every order of the groups (each group's hosts together, in order)."""
    for perm in itertools.permutations(runs):
        yield [h for run in perm for h in run]


@st.composite
def latency_instances(
    draw: st.DrawFn, /, uniform: bool = False, grouped: bool = False, **sizes: int
) -> dict[str, object]:
    case = draw(instances(**sizes))
    if uniform:  # every block alike: one size for all (kv is already one value)
        case["layer_bytes"] = draw(st.integers(0, 100))
    case["hop_cost"] = draw(hops)
    n_hosts = len(case["hosts"])  # type: ignore[arg-type]
    if grouped:
        starts = draw(st.lists(st.booleans(), min_size=n_hosts - 1, max_size=n_hosts - 1))
        case["groups"] = list(itertools.accumulate([0, *map(int, starts)]))
    return case


def check_against(binpack: ModuleType, case: dict[str, object], orders_of: object) -> None:
    problem = problem_of(case)
    hop: float = case["hop_cost"]  # type: ignore[assignment]
    groups: list[int] | None = case.get("groups")  # type: ignore[assignment]
    costs = latency_costs(problem, hop)
    runs = group_runs(groups, len(problem.caps))
    expected = brute_force(problem, costs, orders_of(runs))  # type: ignore[operator]
    if expected is None:
        with pytest.raises(PlanError):
            binpack.plan_layers(**case)
        return
    plan = binpack.plan_layers(**case)
    assert plan.objective == "latency"
    check_plan(plan, problem, hop, groups)
    assert key_of(plan, problem, costs) == expected


@settings(max_examples=250, deadline=None)
@given(case=latency_instances(grouped=True))
def test_matches_brute_force_over_the_orders_searched(binpack: ModuleType, case: dict[str, object]) -> None:
    check_against(binpack, case, rotations)


@settings(max_examples=200, deadline=None)
@given(case=latency_instances(uniform=True, grouped=True, max_layers=5))
def test_exact_over_every_host_order_when_blocks_are_alike(binpack: ModuleType, case: dict[str, object]) -> None:
    check_against(binpack, case, group_orders)


def test_all_on_the_fast_host_when_it_fits(binpack: ModuleType) -> None:
    # The measured case: a 2-thread and a 1-thread worker, equal memory, 8 blocks + output.
    # Balanced evens out the stages (8,1), but they run one after the other: the fast host alone is quicker.
    hosts = [Host("fast", 4 << 30, 43.5e9), Host("slow", 4 << 30, 19.9e9)]
    args = (8, 45 << 20, 125 << 20, 1 << 20, hosts)  # about the sizes of the bench's 8x1024 f32 model
    plan = binpack.plan_layers(*args, hop_cost=1e-4)
    balanced = binpack.plan_layers(*args, objective="balanced", hop_cost=1e-4)
    assert plan.tensor_split == (9, 0) and plan.used_hosts == ("fast",)
    assert balanced.tensor_split == (8, 1) and balanced.objective == "balanced"
    assert plan.latency < balanced.latency and plan.bottleneck > balanced.bottleneck
    assert math.isclose(plan.latency, (8 * (45 << 20) + (125 << 20)) / 43.5e9 + 1e-4)


def test_memory_bound_fast_host_is_filled(binpack: ModuleType) -> None:
    hosts = [Host("fast-small", 1000, 4.0), Host("slow-big", 10**6, 1.0)]
    plan = binpack.plan_layers(20, 100, 100, 0, hosts, margin=0)
    assert plan.tensor_split == (10, 11)  # the fast host as full as it gets; the slow one the rest
    assert plan.latency == 1000 / 4.0 + 1100 / 1.0


def test_speed_decides_when_memory_allows(binpack: ModuleType) -> None:
    # Slower host first in the list: it is left out, not given a share.
    hosts = [Host("slow", 10**6, 1.0), Host("fast", 10**6, 3.0)]
    assert binpack.plan_layers(30, 100, 100, 0, hosts).tensor_split == (0, 31)


@pytest.mark.parametrize(("hop_cost", "split"), [(30.0, (2, 19)), (50.0, (0, 21))])
def test_a_second_host_must_save_more_than_its_round_trip(
    binpack: ModuleType, hop_cost: float, split: tuple[int, int]
) -> None:
    # "b" is 25% faster but holds two items: moving them there saves 2 x 100 x (1 - 1/1.25) = 40.
    hosts = [Host("b", 200, 1.25), Host("a", 10**6, 1.0)]
    plan = binpack.plan_layers(20, 100, 100, 0, hosts, margin=0, hop_cost=hop_cost)
    assert plan.tensor_split == split


def test_hosts_are_reordered_so_the_output_layer_lands_where_it_is_cheapest(binpack: ModuleType) -> None:
    # Blocks carry KV cache (100 bytes each), the output layer none: per byte of memory the output layer is
    # more work, so the small fast host should hold it, which needs it last. In the given order it holds two
    # blocks (cost 200/4 + 500/1 = 550); moved last, one block and the output (300 + 400/4 = 400).
    hosts = [Host("fast", 500, 4.0), Host("slow", 10_000, 1.0)]
    plan = binpack.plan_layers(4, 100, 300, 100, hosts, margin=0)
    assert plan.order == (1, 0) and plan.used_hosts == ("slow", "fast")
    assert plan.tensor_split == (3, 2) and plan.assignments[1].output
    assert plan.latency == 400.0
    balanced = binpack.plan_layers(4, 100, 300, 100, hosts, margin=0, objective="balanced")
    assert balanced.order == (0, 1) and balanced.tensor_split == (2, 3)  # min-max keeps the given order


def test_a_group_moves_as_a_whole(binpack: ModuleType) -> None:
    # The same, with the fast host one of two devices of an rpc-server listed first.
    hosts = [Host("fast", 500, 4.0), Host("fast#1", 0, 4.0), Host("slow", 10_000, 1.0)]
    plan = binpack.plan_layers(4, 100, 300, 100, hosts, margin=0, groups=["a", "a", "b"])
    assert plan.order == (2, 0, 1) and plan.tensor_split == (3, 2, 0)


def test_ties_prefer_fewest_hosts_then_balance_then_the_given_order(binpack: ModuleType) -> None:
    # Equal hosts: every split costs the same time; two hosts are needed (6 items each at most), and of
    # the two-host splits the most even, earlier hosts loaded more, in the order given.
    hosts = [Host(f"h{i}", 600, 1.0) for i in range(3)]
    plan = binpack.plan_layers(8, 100, 100, 0, hosts, margin=0)
    assert plan.tensor_split == (5, 4, 0) and plan.order == (0, 1, 2)


def test_unknown_objective_is_refused(binpack: ModuleType) -> None:
    with pytest.raises(ValueError, match="objective"):
        binpack.plan_layers(1, 1, 1, 0, [Host("a", 10, 1.0)], objective="throughput")


@needs_compiled("binpack")
@settings(max_examples=80, deadline=None)
@given(case=latency_instances(grouped=True, max_layers=80, max_hosts=10))
def test_compiled_matches_twin(case: dict[str, object]) -> None:
    twin, compiled = both("binpack")
    outcomes = []
    for module in (twin, compiled):
        try:
            outcomes.append(module.plan_layers(**case))
        except PlanError as err:
            outcomes.append((str(err), err.host, err.shortfall))
    assert outcomes[0] == outcomes[1]
