"""Inputs, results and errors of the layer planner, shared by both binpack implementations.

Only the searches (`_solve`, `_solve_latency`) are twinned; checking inputs,
building the plan and explaining an infeasible one run once per plan and live
here (the latency search's host orders and integer costs in `_plan_latency`).

The model is the `block_count` transformer blocks plus the output layer
(output norm and `output.weight`), placed as one more item after the last
block: llama.cpp's `--tensor-split`, given whole layer counts summing to
`block_count + 1`, puts the output layer on the last device that gets layers,
which is exactly where a contiguous split of these items puts it.

Two objectives (`OBJECTIVES`):

* "latency": the least time per token of one request. llama.cpp runs a token's
  stages one after the other, so that is the sum of the stage times plus a
  network round trip (`hop_cost`) per host used; hosts may be reordered so
  that the output layer lands where it costs least (see `_plan_latency`).
* "balanced": the least time of the slowest stage (min-max), in the host order
  given. It is what matters when stages overlap (pipelined serving of several
  requests at once), which llama.cpp's RPC split does not do for one request.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from olol._fast._plan_latency import Candidate, candidates, group_runs, latency_costs

__all__ = [
    "OBJECTIVES",
    "Assignment",
    "Host",
    "Plan",
    "PlanError",
    "Problem",
    "build_plan",
    "check_objective",
    "infeasible",
    "prepare",
    "solve",
]

OBJECTIVES = ("latency", "balanced")


def check_objective(objective: str) -> None:
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, not {objective!r}")


# The twinned searches: (mem, work, caps, speeds) -> (items per host, bottleneck), and
# (mem, work, caps, cost per byte, hop, candidates) -> (index of the candidate, items per host in its order).
BalancedSearch = Callable[[list[int], list[int], list[int], list[float]], tuple[list[int], float] | None]
LatencySearch = Callable[
    [list[int], list[int], list[int], list[int], int, list[Candidate]], tuple[int, list[int]] | None
]


class Host(NamedTuple):
    """A host offered to the planner; `speed` is relative throughput (bytes of weights per unit time)."""

    name: str
    free_bytes: int
    speed: float = 1.0


@dataclass(frozen=True)
class Assignment:
    """What one host runs: blocks `start` to `stop` (exclusive) and perhaps the output layer."""

    host: str
    start: int
    stop: int
    output: bool
    memory_bytes: int  # weights + KV cache of what it holds
    stage_time: float  # weight bytes / speed: its share of the time per token

    @property
    def layers(self) -> int:
        """Its `--tensor-split` entry: blocks plus one for the output layer."""
        return self.stop - self.start + int(self.output)


@dataclass(frozen=True)
class Plan:
    """One Assignment per host (a host may get nothing), in the order the layers run: the order
    given, unless the latency objective moved the hosts holding the output layer last (`order`)."""

    assignments: tuple[Assignment, ...]
    bottleneck: float  # the slowest stage's time (what "balanced" minimises)
    objective: str
    latency: float  # estimated time per token of one request: stage times + hop_cost per host used
    order: tuple[int, ...]  # for each assignment, the index of its host in the hosts given

    @property
    def tensor_split(self) -> tuple[int, ...]:
        """Layer counts per host, summing to block_count + 1."""
        return tuple(a.layers for a in self.assignments)

    def tensor_split_arg(self) -> str:
        """The value for llama.cpp's `--tensor-split`."""
        return ",".join(str(n) for n in self.tensor_split)

    @property
    def used_hosts(self) -> tuple[str, ...]:
        return tuple(a.host for a in self.assignments if a.layers)


class PlanError(Exception):
    """The model does not fit. `host` is the host that is short (None: the cluster as a whole)
    and `shortfall` the bytes it lacks after the safety margin."""

    def __init__(self, message: str, host: str | None, shortfall: int) -> None:
        super().__init__(message)
        self.host = host
        self.shortfall = shortfall


@dataclass(frozen=True)
class Problem:
    """Inputs flattened for the solvers: item k < n_layers is block k, the last item the output layer."""

    n_layers: int
    names: tuple[str, ...]
    mem: list[int]  # bytes each item needs on its host (weights, plus KV cache for blocks)
    work: list[int]  # weight bytes each item reads per token
    caps: list[int]  # usable bytes per host after the margin
    speeds: list[float]
    margin: float


def _per_layer(value: int | Sequence[int], n_layers: int, what: str) -> list[int]:
    values = [value] * n_layers if isinstance(value, int) else [int(v) for v in value]
    if len(values) != n_layers:
        raise ValueError(f"{what} has {len(values)} entries for {n_layers} layers")
    if any(v < 0 for v in values):
        raise ValueError(f"{what} must not be negative")
    return values


def prepare(
    n_layers: int,
    layer_bytes: int | Sequence[int],
    output_bytes: int,
    kv_bytes_per_layer: int | Sequence[int],
    hosts: Sequence[Host | tuple[str, int, float]],
    margin: float,
) -> Problem:
    if n_layers < 0:
        raise ValueError("n_layers must not be negative")
    if output_bytes < 0:
        raise ValueError("output_bytes must not be negative")
    if not 0.0 <= margin < 1.0:
        raise ValueError("margin must be in [0, 1)")
    if not hosts:
        raise ValueError("no hosts to plan for")
    weights = _per_layer(layer_bytes, n_layers, "layer_bytes")
    kv = _per_layer(kv_bytes_per_layer, n_layers, "kv_bytes_per_layer")
    names: list[str] = []
    caps: list[int] = []
    speeds: list[float] = []
    for host in hosts:
        name, free, speed = Host(*host)
        if free < 0:
            raise ValueError(f"host {name}: free_bytes must not be negative")
        if not (speed > 0 and math.isfinite(speed)):
            raise ValueError(f"host {name}: speed must be a positive number")
        names.append(str(name))
        caps.append(math.floor(free * (1.0 - margin)))
        speeds.append(float(speed))
    return Problem(
        n_layers=n_layers,
        names=tuple(names),
        mem=[w + k for w, k in zip(weights, kv, strict=True)] + [output_bytes],
        work=[*weights, output_bytes],
        caps=caps,
        speeds=speeds,
        margin=margin,
    )


def solve(
    problem: Problem,
    objective: str,
    hop_cost: float,
    groups: Sequence[Hashable] | None,
    balanced: BalancedSearch,
    latency: LatencySearch,
) -> Plan:
    """Run one implementation's search for `objective` and build the Plan (or raise PlanError)."""
    check_objective(objective)
    runs = group_runs(groups, len(problem.caps))
    costs = latency_costs(problem, hop_cost)
    if objective == "balanced":
        solved = balanced(problem.mem, problem.work, problem.caps, problem.speeds)
        if solved is None:
            raise infeasible(problem)
        return build_plan(problem, solved[0], tuple(range(len(problem.caps))), objective, hop_cost)
    orders = candidates(problem, costs, runs)
    found = latency(problem.mem, problem.work, problem.caps, costs.per_byte, costs.hop, orders)
    if found is None:
        raise infeasible(problem)
    index, counts = found
    return build_plan(problem, counts, orders[index].order, objective, hop_cost)


def build_plan(problem: Problem, counts: Sequence[int], order: Sequence[int], objective: str, hop_cost: float) -> Plan:
    """Turn item counts per host of `order` (from a solver) into a Plan."""
    assignments: list[Assignment] = []
    start = 0
    n = problem.n_layers
    for h, count in zip(order, counts, strict=True):
        stop = start + count
        assignments.append(
            Assignment(
                host=problem.names[h],
                start=min(start, n),
                stop=min(stop, n),
                output=count > 0 and stop == n + 1,
                memory_bytes=sum(problem.mem[start:stop]),
                stage_time=sum(problem.work[start:stop]) / problem.speeds[h] if count else 0.0,
            )
        )
        start = stop
    used = [a.stage_time for a in assignments if a.layers]
    return Plan(
        assignments=tuple(assignments),
        bottleneck=max(used, default=0.0),
        objective=objective,
        latency=sum(used) + hop_cost * len(used),
        order=tuple(order),
    )


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} bytes"


def _items(first: int, n_layers: int) -> str:
    """Describe items first..n_layers (the last being the output layer)."""
    if first >= n_layers:
        return "the output layer"
    blocks = f"layer {first}" if first == n_layers - 1 else f"layers {first}-{n_layers - 1}"
    return f"{blocks} and the output layer"


def infeasible(problem: Problem) -> PlanError:
    """Explain why no placement fits, naming the host that is short and by how much."""
    mem, caps, names, n = problem.mem, problem.caps, problem.names, problem.n_layers
    after = f"after the {problem.margin:.0%} safety margin"
    need, have = sum(mem), sum(caps)
    if need > have:
        return PlanError(
            f"the cluster is short by {_size(need - have)}: the model needs {_size(need)} "
            f"(weights, KV cache and output layer) but the hosts offer {_size(have)} {after}",
            None,
            need - have,
        )
    item = max(range(len(mem)), key=mem.__getitem__)
    largest = max(range(len(caps)), key=caps.__getitem__)
    if mem[item] > caps[largest]:
        what = "the output layer" if item == n else f"layer {item}"
        return PlanError(
            f"{what} needs {_size(mem[item])} but the largest host, {names[largest]}, has "
            f"{_size(caps[largest])} {after}: short by {_size(mem[item] - caps[largest])}",
            names[largest],
            mem[item] - caps[largest],
        )
    # Each host but the last takes as many leading items as fit (the most any
    # placement can give it), so what remains is the least the last host must hold:
    # its shortfall is exact, and giving it that much more memory makes the plan fit.
    pos = 0
    for cap in caps[:-1]:
        used = 0
        while pos < len(mem) and used + mem[pos] <= cap:
            used += mem[pos]
            pos += 1
    tail = sum(mem[pos:])
    return PlanError(
        f"host {names[-1]} is short by {_size(tail - caps[-1])}: as the last host it must hold "
        f"{_items(pos, n)} ({_size(tail)}) but has {_size(caps[-1])} {after}",
        names[-1],
        tail - caps[-1],
    )
