"""Layer planner: contiguous layer ranges per host, for the least time per token or the least slowest stage.

Pure-Python twin of `binpack_c.pyx` (same API, same behaviour); import the
facade `olol._fast.binpack` rather than this module. Inputs, results, error
messages and the host orders the latency search tries are shared, in
`_plan_types` and `_plan_latency`.

A stage's time is the weight bytes it reads per token over the host's speed:
decoding is memory-bandwidth bound, so bytes are the work. Memory counts
weights plus the KV cache of each block (and the output layer's weights on the
last host used), against `free_bytes * (1 - margin)`.

objective="latency" (the default): llama.cpp runs a token's stages one after
the other, so one request waits for the sum of the stage times plus a round
trip (`hop_cost`, in the time unit of bytes / speed) per host used. The search
(`_solve_latency`) is an exact dynamic programme over contiguous splits, run
once per candidate host order (`_plan_latency.candidates`): least total cost,
then fewest hosts, then lowest bottleneck, then the earlier candidate and
earlier hosts loaded more. Costs are integers (see `_plan_latency`), so ties
are exact and both implementations agree to the last tie.

objective="balanced": the least bottleneck (slowest stage), for when stages
overlap (pipelined serving); `_solve`, in the host order given, in two passes:

1. the least possible bottleneck T (the slowest stage's time);
2. among splits whose every stage takes at most T, the one using the fewest
   hosts (each hop costs a network round trip per token), then the least total
   time (what a single request waits), then, on exact ties, the one that loads
   earlier hosts more.

Every pass is O(hosts x items^2) at worst and stops scanning a host's range
as soon as it overflows memory or can no longer beat the best found.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

from olol._fast._plan_latency import Candidate
from olol._fast._plan_types import Assignment, Host, Plan, PlanError, prepare, solve

__all__ = ["Assignment", "Host", "Plan", "PlanError", "plan_layers"]


def plan_layers(
    n_layers: int,
    layer_bytes: int | Sequence[int],
    output_bytes: int,
    kv_bytes_per_layer: int | Sequence[int],
    hosts: Sequence[Host | tuple[str, int, float]],
    margin: float = 0.1,
    *,
    objective: str = "latency",
    hop_cost: float = 0.0,
    groups: Sequence[Hashable] | None = None,
) -> Plan:
    """Place `n_layers` blocks and the output layer on `hosts` (see the module docstring).

    `layer_bytes` and `kv_bytes_per_layer` are one value for every block or one
    per block. `groups` (one key per host; equal keys adjacent) keeps hosts
    together and in order when the latency search reorders hosts: the devices of
    one rpc-server. Raises PlanError when nothing fits, ValueError on bad inputs.
    """
    problem = prepare(n_layers, layer_bytes, output_bytes, kv_bytes_per_layer, hosts, margin)
    return solve(problem, objective, hop_cost, groups, _solve, _solve_latency)


def _prefix(values: Sequence[int]) -> list[int]:
    out = [0] * (len(values) + 1)
    for k, v in enumerate(values):
        out[k + 1] = out[k] + v
    return out


def _solve_latency(
    mem: Sequence[int],
    work: Sequence[int],
    caps: Sequence[int],
    per_byte: Sequence[int],
    hop: int,
    orders: Sequence[Candidate],
) -> tuple[int, list[int]] | None:
    """The best candidate's index and its items per host (in its order), or None when none fits."""
    n = len(mem)
    pm, pw = _prefix(mem), _prefix(work)
    best_key: tuple[int, int, int, int] | None = None
    best: tuple[int, list[int]] | None = None
    for index, (rank, order, tail, bound) in enumerate(orders):
        if best_key is not None and bound > best_key[0]:
            break  # orders come best bound first: none left can beat the best plan
        # Per prefix j of the items: least (cost, hosts used, bottleneck) so far; hosts -1: unreachable.
        spent = [0] * (n + 1)
        hosts = [0] + [-1] * n
        peak = [0] * (n + 1)
        parents: list[list[int]] = []
        for k, h in enumerate(order):
            if k == len(order) - tail:
                hosts[n] = -1  # the group moved last holds the output (the given order covers it unused)
            cap, c = caps[h], per_byte[h]
            parent = list(range(n + 1))
            # j descending: the scan reads only smaller prefixes, still the previous host's.
            for j in range(n, 0, -1):
                s_j, u_j, m_j = spent[j], hosts[j], peak[j]
                i = j - 1
                while i >= 0 and pm[j] - pm[i] <= cap:
                    if hosts[i] >= 0:
                        stage = (pw[j] - pw[i]) * c
                        s = spent[i] + stage + hop
                        u = hosts[i] + 1
                        m = peak[i] if peak[i] > stage else stage
                        if u_j < 0 or s < s_j or (s == s_j and (u < u_j or (u == u_j and m < m_j))):
                            s_j, u_j, m_j = s, u, m
                            parent[j] = i
                    i -= 1
                spent[j], hosts[j], peak[j] = s_j, u_j, m_j
            parents.append(parent)
        if hosts[n] < 0:
            continue
        key = (spent[n], hosts[n], peak[n], rank)
        if best_key is None or key < best_key:
            best_key = key
            best = (index, _counts(parents, n))
    return best


def _counts(parents: Sequence[Sequence[int]], n: int) -> list[int]:
    counts = [0] * len(parents)
    j = n
    for h in range(len(parents) - 1, -1, -1):
        i = parents[h][j]
        counts[h] = j - i
        j = i
    return counts


def _solve(
    mem: Sequence[int], work: Sequence[int], caps: Sequence[int], speeds: Sequence[float]
) -> tuple[list[int], float] | None:
    """Items per host (in order) and the bottleneck, or None when memory cannot hold the items."""
    n = len(mem)
    pm, pw = _prefix(mem), _prefix(work)

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

    return _counts(parents, n), bottleneck
