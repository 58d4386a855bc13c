"""The distributed mode's CPU-bound parts: planning time, and ggml framing on the tunnel's workloads.

    python -m bench.bench_dist_fast      # build first: python setup.py build_ext --inplace

Planning: `LayerPlanner.plan` (what the coordinator runs on every (re-)plan) for a 128-layer model on 16
workers. Framing: the parser as the tunnel feeds it, compiled and pure-Python twin, against copying
the same bytes once (`bytearray(chunk)`), which is the least any relay does. Medians of several runs.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from bench._report import median, table, write_section
from olol._fast import compiled, pure
from olol._fast._rpc_proto import RpcCommand, encode_request
from olol.split.planner import LayerPlanner
from olol.split.profile import ModelProfile
from olol.split.workers import WorkerInfo

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30


def timed(run: Callable[[], object], repeats: int) -> float:
    run()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return median(samples)


# -- planning ----------------------------------------------------------------------------------

PROFILE = ModelProfile(
    path=Path("405b-class.gguf"),
    architecture="llama",
    n_layers=128,
    layer_bytes=tuple(300 * MIB + 4096 * (k % 3) for k in range(128)),
    output_bytes=2 * GIB,
    kv_bytes_per_layer=(64 * MIB,) * 128,
    embedding_bytes=2 * GIB,
    n_ctx=8192,
    kv_type="f16",
)
# 2 to 9.5 GiB each, 92 GiB in all, speeds not in memory order: the ~48 GiB model needs at least six of
# them, and which ones is the search's to find.
WORKERS = [
    WorkerInfo(
        f"host{i}:50052", 0, "CUDA0", (4 + i) * GIB // 2, (4 + i) * GIB // 2, (1 + 0.4 * (i * 7 % 16)) * 1e11, "", ""
    )
    for i in range(16)
]


def planning() -> list[list[object]]:
    rows: list[list[object]] = []
    for objective in ("latency", "balanced"):
        for label, module in (("compiled", compiled("binpack")), ("pure Python", pure("binpack"))):
            if module is None:
                continue
            # The same planner, on one implementation.
            planner = LayerPlanner(0.1, solver=module.plan_layers, objective=objective)
            seconds = timed(lambda p=planner: p.plan(PROFILE, WORKERS), 9)  # type: ignore[misc]
            used = len(planner.plan(PROFILE, WORKERS).used_addresses)
            rows.append([objective, label, f"{used} of 16", f"{seconds * 1000:.2f} ms", "<= 10 ms"])
    return rows


# -- framing -----------------------------------------------------------------------------------


def token_bursts(n: int = 20_000) -> list[bytes]:
    """What llama-server sends a worker per token (coalesced by the coordinator into one message)."""
    burst = b"".join(
        [encode_request(RpcCommand.SET_TENSOR, bytes(305))] * 5
        + [encode_request(RpcCommand.GRAPH_RECOMPUTE, bytes(4)), encode_request(RpcCommand.GET_TENSOR, bytes(312))]
    )
    return [burst] * n


def weight_upload(total: int = 256 * MIB, frame: int = 16 * MIB, read: int = 256 * KIB) -> list[bytes]:
    """Weights at load: big SET_TENSOR frames arriving in socket-sized reads."""
    one = encode_request(RpcCommand.SET_TENSOR, bytes(frame))
    stream = one * (total // frame)
    return [stream[i : i + read] for i in range(0, len(stream), read)]


def parse(module: ModuleType, chunks: list[bytes], *, views: bool = False) -> Callable[[], object]:
    def run() -> object:
        parser = module.FrameParser("request", 4 * GIB, handshake=False)
        n = 0
        for chunk in chunks:
            frames = parser.feed(chunk)
            if views:  # a consumer that reads every frame's bytes, not just its command
                n += sum(len(f.raw) for f in frames)
            n += len(frames)
        return n

    return run


def copy(chunks: list[bytes]) -> Callable[[], object]:
    def run() -> object:
        return sum(len(bytearray(c)) for c in chunks)  # one copy of every byte

    return run


def framing() -> list[list[object]]:
    rows: list[list[object]] = []
    bursts = token_bursts()
    for label, chunks, views in (
        ("per-token bursts (7 frames, 2.6 KiB), commands only (the tunnel)", bursts, False),
        ("per-token bursts, every frame's `raw` read too", bursts, True),
        ("weight upload (16 MiB frames, 256 KiB reads)", weight_upload(), False),
    ):
        size = sum(len(c) for c in chunks)
        base = timed(copy(chunks), 5)
        results = {}
        for name in ("compiled", "pure"):
            module = compiled("framing") if name == "compiled" else pure("framing")
            if module is not None:
                results[name] = timed(parse(module, chunks, views=views), 5)
        fast, slow = results.get("compiled"), results["pure"]
        rows.append(
            [
                label,
                f"{size / base / 1e9:.2f} GB/s",
                f"{size / fast / 1e9:.2f} GB/s" if fast else "not built",
                f"{size / slow / 1e9:.2f} GB/s",
                f"{slow / fast:.1f}x" if fast else "-",
                f"{base / fast:.2f}x" if fast else "-",
            ]
        )
    return rows


def main() -> None:
    plan_rows = planning()
    frame_rows = framing()
    for row in plan_rows + frame_rows:
        print(" | ".join(str(c) for c in row))
    cpu = platform.processor() or platform.machine()
    markdown = (
        "## Distributed mode: planning time and framing throughput\n\n"
        f"`python -m bench.bench_dist_fast`; {cpu}, Python {platform.python_version()}, medians of 5-9 runs.\n\n"
        "Planning is `LayerPlanner.plan` (the whole coordinator step: hosts from worker capabilities, the "
        "exact search, the llama.cpp split) for a 128-block model (~48 GiB) on 16 workers of 2 to 9.5 GiB and "
        "unrelated speeds, so the model must be split over several of them.\n\n"
        + table(["objective (128 layers x 16 workers)", "implementation", "workers used", "time", "target"], plan_rows)
        + "\n\nFraming is `FrameParser.feed` on what the tunnel sees, against copying the same bytes once "
        "(the least any relay does); target: compiled >= 10x the pure-Python twin. Per-token frames are "
        "views of the message (no copy); the compiled parser makes a frame's `raw` view only when it is "
        "first read (the tunnel reads only commands), while the twin builds every view: the second row "
        "is the like-for-like comparison when a consumer reads them all. Big frames are assembled once, "
        "in a buffer of their exact size, so that row is bound by memory copies in both.\n\n"
        + table(["workload", "memcpy", "compiled", "pure Python", "compiled vs twin", "compiled vs memcpy"], frame_rows)
    )
    write_section("dist-fast", markdown)


if __name__ == "__main__":
    main()
