"""LayerPlanner: which worker device holds which layers, as llama.cpp's `--tensor-split`.

Inputs: the model's profile (bytes per block, output layer, KV cache per
block) and each worker device's free memory and measured speed. The search
itself is `olol._fast.binpack.plan_layers` (contiguous ranges within memory
after a safety margin); this module turns workers into planner hosts and the
result into llama-server arguments.

The objective is per-token latency by default: llama.cpp's RPC split runs a
token's stages one after the other (one device computes while the others
wait), so a request waits for the sum of the stage times plus a network round
trip per device used: a slower worker gets layers only when the faster ones
lack the memory, and a worker is used at all only when its share saves more
than its round trip. "balanced" (least slowest stage) is kept for serving
where stages overlap. Under "latency" the planner may list the rpc-servers in
another order than given (the one holding the output layer last); `DistPlan`
follows that order everywhere, so `--rpc` and `--tensor-split` stay aligned.

llama-server gets one `--rpc` endpoint per worker that holds anything (a
worker given no layers is left out, so it costs no connection and no round
trip per token) and one `--tensor-split` entry per device of those endpoints,
in the same order, as whole layer counts summing to block_count + 1. Given as
counts and with `--fit off`, llama.cpp places layers exactly as planned.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from olol._fast.binpack import OBJECTIVES, Assignment, Host, Plan, PlanError, check_objective, plan_layers
from olol.split.profile import ModelProfile
from olol.split.workers import WorkerInfo

__all__ = ["DEFAULT_HOP_COST", "OBJECTIVES", "DistPlan", "LayerPlanner", "PlanError", "check_objective"]

# Seconds one stage's network round trip adds to a token: a ggml RPC exchange on a LAN or loopback.
DEFAULT_HOP_COST = 1e-4


@dataclass(frozen=True)
class DistPlan:
    profile: ModelProfile
    devices: tuple[WorkerInfo, ...]  # every device offered, in the plan's (and so `--rpc`) order
    plan: Plan

    def assignment(self, device: WorkerInfo) -> Assignment:
        return self.plan.assignments[self.devices.index(device)]

    @property
    def seconds_per_token(self) -> float | None:
        """The plan's estimate for one request (stages in turn, a round trip each); None when a worker
        that holds layers measured no speed (its stage time is then in no unit)."""
        used = [d for d, a in zip(self.devices, self.plan.assignments, strict=True) if a.layers]
        return self.plan.latency if all(d.speed > 0 for d in used) else None

    @property
    def used_addresses(self) -> tuple[str, ...]:
        """rpc-servers that hold layers, in order (each appears once)."""
        used: list[str] = []
        for device, a in zip(self.devices, self.plan.assignments, strict=True):
            if a.layers and device.address not in used:
                used.append(device.address)
        return tuple(used)

    @property
    def tensor_split(self) -> tuple[int, ...]:
        """One entry per device of the used rpc-servers (llama.cpp lists an endpoint's devices together)."""
        used = set(self.used_addresses)
        return tuple(a.layers for d, a in zip(self.devices, self.plan.assignments, strict=True) if d.address in used)

    def llama_args(self, endpoints: dict[str, str]) -> list[str]:
        """llama-server arguments; `endpoints` maps an rpc-server address to what llama-server dials."""
        rpc = ",".join(endpoints[a] for a in self.used_addresses)
        split = ",".join(str(n) for n in self.tensor_split)
        # -ngl above any block count: every layer goes to the RPC devices, none to the local CPU.
        return ["--rpc", rpc, "-ngl", "999", "--tensor-split", split, "--fit", "off"]

    def layer_devices(self) -> list[int]:
        """For each layer 0..block_count (the last being the output layer), the index of its
        llama.cpp device (RPC0, RPC1, ... in `--rpc` order), as llama-server reports them."""
        out: list[int] = []
        for index, count in enumerate(self.tensor_split):
            out += [index] * count
        return out


Solver = Callable[..., Plan]  # olol._fast.binpack.plan_layers, or either of its implementations


class LayerPlanner:
    """Plan a model over worker devices; `margin` keeps that share of each device's free memory spare.

    `objective` is "latency" (least time per token of one request: llama.cpp runs the stages in
    turn) or "balanced" (least slowest stage); `hop_cost` is the seconds a stage's round trip adds
    (speeds are bytes per second, so stage times are seconds). `solver` is the search (the compiled
    or pure-Python `plan_layers`; default: the facade's)."""

    def __init__(
        self,
        margin: float = 0.1,
        solver: Solver = plan_layers,
        *,
        objective: str = "latency",
        hop_cost: float = DEFAULT_HOP_COST,
    ) -> None:
        check_objective(objective)  # now, not at the first plan
        self.margin = margin
        self.solver = solver
        self.objective = objective
        self.hop_cost = hop_cost

    def plan(self, profile: ModelProfile, devices: Sequence[WorkerInfo]) -> DistPlan:
        if not devices:
            raise PlanError("no rpc-server is reachable to plan on", None, profile.weight_bytes)
        hosts = [Host(d.name, d.free_bytes, s) for d, s in zip(devices, _speeds(devices), strict=True)]
        plan = self.solver(
            profile.n_layers,
            list(profile.layer_bytes),
            profile.output_bytes,
            list(profile.kv_bytes_per_layer),
            hosts,
            self.margin,
            objective=self.objective,
            hop_cost=self.hop_cost,
            groups=[d.address for d in devices],  # an rpc-server's devices stay together, as in --rpc
        )
        return DistPlan(profile, tuple(devices[k] for k in plan.order), plan)


def _speeds(devices: Sequence[WorkerInfo]) -> list[float]:
    """Measured speeds; a device that reports none is taken to be as fast as the median one."""
    known = [d.speed for d in devices if d.speed > 0]
    fallback = statistics.median(known) if known else 1.0
    return [d.speed if d.speed > 0 else fallback for d in devices]
