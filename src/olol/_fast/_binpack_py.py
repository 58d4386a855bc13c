"""Layer planner: contiguous layer ranges per host that minimise the slowest stage.

Pure-Python twin of `binpack_c.pyx` (same API, same behaviour); import the
facade `olol._fast.binpack` rather than this module. Inputs, results and error
messages are shared, in `_plan_types`.

A stage's time is the weight bytes it reads per token over the host's speed:
decoding is memory-bandwidth bound, so bytes are the work. Memory counts
weights plus the KV cache of each block (and the output layer's weights on the
last host used), against `free_bytes * (1 - margin)`.

The search is exact, a dynamic programme over contiguous splits in host order,
in two passes:

1. the least possible bottleneck T (the slowest stage's time);
2. among splits whose every stage takes at most T, the one using the fewest
   hosts (each hop costs a network round trip per token), then the least total
   time (what a single request waits), then, on exact ties, the one that loads
   earlier hosts more.

Both passes are O(hosts x items^2) at worst and stop scanning a host's range
as soon as it overflows memory or can no longer beat the best found.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from olol._fast._plan_types import Assignment, Host, Plan, PlanError, build_plan, infeasible, prepare

__all__ = ["Assignment", "Host", "Plan", "PlanError", "plan_layers"]


def plan_layers(
    n_layers: int,
    layer_bytes: int | Sequence[int],
    output_bytes: int,
    kv_bytes_per_layer: int | Sequence[int],
    hosts: Sequence[Host | tuple[str, int, float]],
    margin: float = 0.1,
) -> Plan:
    """Place `n_layers` blocks and the output layer on `hosts` (see the module docstring).

    `layer_bytes` and `kv_bytes_per_layer` are one value for every block or one
    per block. Raises PlanError when nothing fits, ValueError on bad inputs.
    """
    problem = prepare(n_layers, layer_bytes, output_bytes, kv_bytes_per_layer, hosts, margin)
    solved = _solve(problem.mem, problem.work, problem.caps, problem.speeds)
    if solved is None:
        raise infeasible(problem)
    counts, bottleneck = solved
    return build_plan(problem, counts, bottleneck)


def _solve(
    mem: Sequence[int], work: Sequence[int], caps: Sequence[int], speeds: Sequence[float]
) -> tuple[list[int], float] | None:
    """Items per host (in order) and the bottleneck, or None when memory cannot hold the items."""
    n = len(mem)
    pm = [0] * (n + 1)
    pw = [0] * (n + 1)
    for k in range(n):
        pm[k + 1] = pm[k] + mem[k]
        pw[k + 1] = pw[k] + work[k]

    # Pass 1: best[j] = least bottleneck placing items [0, j) on the hosts so far.
    best = [0.0] + [math.inf] * n
    for cap, speed in zip(caps, speeds, strict=True):
        nxt = best[:]  # the host takes nothing
        for j in range(1, n + 1):
            value = nxt[j]
            i = j - 1
            while i >= 0 and pm[j] - pm[i] <= cap:
                stage = (pw[j] - pw[i]) / speed
                if stage >= value:
                    break  # stages only grow as the range grows
                before = best[i]
                if before < value:
                    value = before if before > stage else stage
                i -= 1
            nxt[j] = value
        best = nxt
    bottleneck = best[n]
    if bottleneck == math.inf:
        return None

    # Pass 2: fewest hosts, then least total time, with every stage within the bottleneck.
    cost: list[tuple[int, float] | None] = [(0, 0.0)] + [None] * n
    parents: list[list[int]] = []
    for cap, speed in zip(caps, speeds, strict=True):
        nxt_cost = cost[:]
        parent = list(range(n + 1))
        for j in range(1, n + 1):
            chosen = nxt_cost[j]
            i = j - 1
            while i >= 0 and pm[j] - pm[i] <= cap:
                stage = (pw[j] - pw[i]) / speed
                if stage > bottleneck:
                    break
                prior = cost[i]
                if prior is not None:
                    candidate = (prior[0] + 1, prior[1] + stage)
                    if chosen is None or candidate < chosen:
                        chosen = candidate
                        parent[j] = i
                i -= 1
            nxt_cost[j] = chosen
        parents.append(parent)
        cost = nxt_cost

    counts = [0] * len(caps)
    j = n
    for h in range(len(caps) - 1, -1, -1):
        i = parents[h][j]
        counts[h] = j - i
        j = i
    return counts, bottleneck
