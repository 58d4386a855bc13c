"""Compiled hot paths against their pure-Python twins, side by side in one run.

    python -m bench.bench_fast          # build first: python setup.py build_ext --inplace

Each workload runs on both implementations, median of several repeats, and the
table goes into the `fast-paths` section of BENCHMARKS.md. The workloads are
what OLOL does at scale: routing lookups over a model registry, parsing weight
uploads to ggml-rpc-server as they stream through, planning a 128-layer model
over 8 hosts.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from importlib.metadata import version
from types import ModuleType

from bench._report import median, table, write_section
from olol._fast import compiled, pure
from olol._fast._rpc_proto import RpcCommand, encode_request

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30

Workload = Callable[[ModuleType], object]


def timed(run: Workload, module: ModuleType, repeats: int) -> float:
    run(module)  # warm-up: imports, caches, first allocations
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(module)
        samples.append(time.perf_counter() - start)
    return median(samples)


# -- quant ---------------------------------------------------------------------

NAMES = [
    f"{model}:{size}-{variant}-{level}"
    for model, size in (("llama3", "8b"), ("qwen2.5", "14b"), ("mistral", "7b"), ("gemma2", "9b"))
    for variant in ("instruct", "text")
    for level in ("q4_0", "Q4_K_M", "q5_1", "q8_0", "fp16", "iq4_xs", "q6_K", "bf16")
]
REGISTRY = NAMES[::4]  # 16 models on the cluster


def quant_lookups(module: ModuleType) -> object:
    """100k lookups: parse a requested name's level and test it against a host's level."""
    parse, compatible = module.parse_level, module.compatible
    hits = 0
    n = len(NAMES)
    for i in range(100_000):
        level = parse(NAMES[i % n])
        if level is not None and compatible(level, "q8_0"):
            hits += 1
    return hits


def quant_best_match(module: ModuleType) -> object:
    """10k routing decisions, each over a 16-model registry."""
    best = module.best_match
    return [best(NAMES[i % len(NAMES)], REGISTRY) for i in range(10_000)]


# -- framing -------------------------------------------------------------------


def set_tensor_stream(payload: int, total: int = 64 * MIB, chunk: int = 64 * KIB) -> list[bytes]:
    """`total` bytes of SET_TENSOR frames of `payload` bytes each, cut into `chunk`-sized reads."""
    frame = encode_request(RpcCommand.SET_TENSOR, bytes(payload))
    stream = frame * max(1, total // len(frame))
    return [stream[i : i + chunk] for i in range(0, len(stream), chunk)]


BIG_FRAMES = set_tensor_stream(1 * MIB)
SMALL_FRAMES = set_tensor_stream(4 * KIB)


def parse(chunks: list[bytes]) -> Workload:
    def run(module: ModuleType) -> object:
        parser = module.FrameParser("request", 4 * GIB)
        payload_bytes = 0
        for chunk in chunks:
            for frame in parser.feed(chunk):
                payload_bytes += len(frame.payload)
        return payload_bytes

    return run


# -- binpack -------------------------------------------------------------------

# A 70B-class model at q4: 128 blocks of ~300 MiB, a 1 GiB output layer, 32k
# context of f16 KV; eight mismatched hosts.
HOSTS = [(f"host{i}", (12 + 7 * i) * GIB, 1.0 + 0.35 * i) for i in range(8)]


def plan(module: ModuleType) -> object:
    return [
        module.plan_layers(128, [300 * MIB + 4096 * (k % 3) for k in range(128)], GIB, 40 * MIB, HOSTS, 0.1)
        for _ in range(5)
    ]


WORKLOADS: list[tuple[str, str, Workload, int]] = [
    ("quant", "100k level lookups (parse + compatible)", quant_lookups, 7),
    ("quant", "10k best_match over 16 models", quant_best_match, 5),
    ("framing", "64 MiB of 1 MiB SET_TENSOR frames, 64 KiB reads", parse(BIG_FRAMES), 7),
    ("framing", "64 MiB of 4 KiB SET_TENSOR frames, 64 KiB reads", parse(SMALL_FRAMES), 5),
    ("binpack", "5 plans: 128 layers on 8 hosts", plan, 5),
]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def main() -> None:
    rows = []
    for name, label, run, repeats in WORKLOADS:
        twin, fast = pure(name), compiled(name)
        if fast is not None:
            assert run(twin) == run(fast), f"{name}: implementations disagree on {label}"
        slow_s = timed(run, twin, repeats)
        fast_s = timed(run, fast, repeats) if fast is not None else None
        ratio = f"{slow_s / fast_s:.1f}x" if fast_s else "not built"
        rows.append([name, label, _ms(slow_s), _ms(fast_s) if fast_s else "not built", ratio])
        print(f"{name:8} {label:52} {rows[-1][2]:>10} {rows[-1][3]:>10} {ratio:>8}")
    markdown = (
        "## Compiled hot paths vs pure-Python twins\n\n"
        "`python -m bench.bench_fast` (after `python setup.py build_ext --inplace`). Median of 5-7 runs "
        f"each, one process; {platform.processor() or platform.machine()}, {_cpu()}, "
        f"Python {platform.python_version()}, Cython {version('Cython')}.\n\n"
        + table(["hot path", "workload", "pure Python", "compiled", "speed-up"], rows)
        + "\n\nFrames larger than a read are copied once into a buffer of their own size, so 1 MiB "
        "frames run at memcpy speed in both implementations; frames inside a read are views of it "
        "(no copy), and there the per-frame overhead the compiled parser removes dominates."
    )
    write_section("fast-paths", markdown)


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
