"""The latency objective's shared parts: integer stage costs, the host orders to search, their bounds.

For one request llama.cpp runs a token's stages (RPC devices) one after the
other, so a token takes the SUM of the stage times plus a network round trip
per stage used, not the slowest stage. The latency objective minimises

    sum over used hosts of (weight bytes / speed + hop_cost)

then uses the fewest hosts, then the lowest bottleneck (slowest stage), then
(deterministically) the given host order and earlier hosts loaded more.

Costs are integers: each host gets a cost per byte, `scale * slowest speed /
its speed` rounded once, and a stage costs its bytes times that. Sums of
integers are exact, so splits that are equally good really tie (with floats,
3+6 blocks and 4+5 blocks on equal hosts can differ in the last bit, and the tie
breaks would follow rounding noise), and the lexicographic key (cost, hosts,
bottleneck) composes exactly in the dynamic programme. `scale` is as large as
int64 allows for this problem (all costs stay below 2**61), so rounding the
per-byte costs changes them by far less than any speed measurement's error.

The sum does not depend on the order of the stages, except that the output
layer goes on the last host used (llama.cpp's `--tensor-split` rule) and that
each host's layers are one contiguous range. So besides the order given, the
search tries each other group of hosts (an rpc-server's devices stay together
and in order, as llama.cpp lists them) moved last and holding the output
layer, and runs the exact DP over each such order. When every block has the
same size, that covers every plan of every host order (only how many blocks
each host gets and which host gets the output matter), so the search is exact;
with blocks of different sizes it is exact over those orders. Equally good
plans keep the order given, so the `--rpc` order only changes when that is
faster. Orders are searched by a lower bound (a fractional fill of the
cheapest hosts), and the search stops once no order left can beat the best
plan found; orders whose hosts are alike in memory and cost make the same
plans, so only one of them is tried.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import NamedTuple, Protocol

__all__ = ["Candidate", "LatencyCosts", "candidates", "group_runs", "latency_costs"]


class Problem(Protocol):
    """What this search reads of `_plan_types.Problem` (a protocol: that module builds plans with this one)."""

    @property
    def mem(self) -> list[int]: ...

    @property
    def work(self) -> list[int]: ...

    @property
    def caps(self) -> list[int]: ...

    @property
    def speeds(self) -> list[float]: ...


_BUDGET = 1 << 60  # every plan's cost stays below this (and twice it below int64's limit)


class LatencyCosts(NamedTuple):
    per_byte: list[int]  # per host: the integer cost of one byte it reads per token
    hop: int  # one stage's round trip, in the same units


class Candidate(NamedTuple):
    """One host order for the latency DP; solvers take these as plain tuples, best `bound` first."""

    rank: int  # tie-break between orders with equally good plans: 0 is the order given
    order: tuple[int, ...]  # host indices; the last `tail` form the group that holds the output layer
    tail: int  # 0 for the order given, which may leave its last hosts unused
    bound: int  # no plan this candidate stands for costs less


def latency_costs(problem: Problem, hop_cost: float) -> LatencyCosts:
    if not (hop_cost >= 0 and math.isfinite(hop_cost)):
        raise ValueError("hop_cost must be a non-negative number")
    slowest = min(problem.speeds)
    # Work-equivalent (bytes at the slowest speed) of the costliest plan: every byte on the
    # slowest host and a round trip per host.
    budget = sum(problem.work) + len(problem.speeds) * hop_cost * slowest
    scale = max(1, int(_BUDGET / max(budget, 1.0)))
    per_byte = [math.floor(scale * (slowest / speed) + 0.5) for speed in problem.speeds]
    hop = min(math.floor(hop_cost * slowest * scale + 0.5), _BUDGET // (len(problem.speeds) + 1))
    return LatencyCosts(per_byte, hop)


def group_runs(groups: Sequence[Hashable] | None, n_hosts: int) -> list[range]:
    """Hosts that must stay together and in order (one rpc-server's devices), as runs of equal keys."""
    if groups is None:
        return [range(h, h + 1) for h in range(n_hosts)]
    if len(groups) != n_hosts:
        raise ValueError(f"groups has {len(groups)} entries for {n_hosts} hosts")
    runs: list[range] = []
    seen: set[Hashable] = set()
    start = 0
    for h in range(1, n_hosts + 1):
        if h == n_hosts or groups[h] != groups[start]:
            if groups[start] in seen:
                raise ValueError(f"the hosts of group {groups[start]!r} must be adjacent")
            seen.add(groups[start])
            runs.append(range(start, h))
            start = h
    return runs


def candidates(problem: Problem, costs: LatencyCosts, runs: Sequence[range]) -> list[Candidate]:
    """The orders to search, best bound first: the order given, then each other group moved last
    (and made to hold the output layer: plans that leave it unused are the given order's).
    Empty when the hosts cannot hold the model in any order."""
    caps, mem, work, per_byte = problem.caps, problem.mem, problem.work, costs.per_byte
    n_hosts = len(caps)
    # Any plan's hosts together read every block, each at most its memory cap (a block's
    # weights never exceed its weights + KV), so filling the cheapest hosts first, a fraction
    # of a block where one ends, costs no more than any plan does.
    fill = 0
    left = sum(work[:-1])
    for h in sorted(range(n_hosts), key=lambda h: (per_byte[h], h)):
        take = min(left, caps[h])
        fill += take * per_byte[h]
        left -= take
    holders = [h for h in range(n_hosts) if caps[h] >= mem[-1]]
    if left or not holders:
        return []

    def bound(able: Sequence[int]) -> int:
        return fill + work[-1] * min(per_byte[h] for h in able) + costs.hop

    given = tuple(range(n_hosts))
    out = [Candidate(0, given, 0, bound(holders))]
    seen: set[tuple[object, ...]] = set()
    for r, run in enumerate(runs[:-1]):
        able = [h for h in run if caps[h] >= mem[-1]]
        if not able:
            continue  # no device of this group can hold the output layer
        order = tuple(h for h in given if h not in run) + tuple(run)
        # Hosts alike in memory and cost make the same plans: try one such order only.
        signature = (len(run), *((caps[h], per_byte[h]) for h in order))
        if signature not in seen:
            seen.add(signature)
            out.append(Candidate(r + 1, order, len(run), bound(able)))
    out.sort(key=lambda c: (c.bound, c.rank))
    return out
