"""The plan as a table (`olol dist --plan-only`)."""

from __future__ import annotations

from rich.table import Table

from olol.split.planner import DistPlan

__all__ = ["estimate", "plan_table", "size"]


def size(n: float) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} B"


def estimate(dist: DistPlan) -> str:
    """The plan's objective and estimated time per token, for people."""
    plan, seconds = dist.plan, dist.seconds_per_token
    if seconds is not None:
        per_token = f"~{seconds * 1e3:.2f} ms per token (stages in turn, a round trip each)"
    else:
        per_token = "time per token unknown (a worker measured no speed)"
    reordered = "; rpc-servers reordered (output layer last)" if list(plan.order) != sorted(plan.order) else ""
    return f"objective {plan.objective}: {per_token}{reordered}"


def plan_table(dist: DistPlan, margin: float) -> Table:
    p = dist.profile
    table = Table(
        title=f"{p.path.name}: {p.n_layers} layers + output, {size(p.weight_bytes)} of weights, "
        f"KV {size(p.kv_bytes)} ({p.n_ctx} tokens, {p.kv_type})",
        caption=f"--tensor-split {','.join(map(str, dist.tensor_split))} over {', '.join(dist.used_addresses)}; "
        f"{margin:.0%} of free memory kept spare\n{estimate(dist)}",
    )
    for column in ("rpc-server", "device", "layers", "blocks", "needs", "free", "speed", "time/token"):
        table.add_column(column, justify="left" if column in ("rpc-server", "device", "blocks") else "right")
    bottleneck = dist.plan.bottleneck
    for device, a in zip(dist.devices, dist.plan.assignments, strict=True):
        blocks = "-" if a.stop <= a.start else f"{a.start}-{a.stop - 1}"
        if a.output:
            blocks += " + output"
        stage = f"{a.stage_time * 1e3:.2f} ms" if device.speed > 0 else f"{a.stage_time:.3g}"
        if a.layers and abs(a.stage_time - bottleneck) <= 1e-12 * max(bottleneck, 1.0):
            stage += " (slowest)"
        table.add_row(
            device.address,
            device.device_name,
            str(a.layers),
            blocks if a.layers else "-",
            size(a.memory_bytes),
            size(device.free_bytes),
            f"{device.speed / 1e9:.2f} GB/s" if device.speed > 0 else "?",
            stage if a.layers else "-",
        )
    return table
