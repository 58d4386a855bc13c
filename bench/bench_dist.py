"""Distributed inference with real llama.cpp: OLOL against plain llama.cpp, side by side in one run.

    python -m bench.bench_dist [tokens] [hetero]     # default: both
    python -m bench.bench_dist_tunnel [rtt] [preseed]

* tokens: decode tokens/s of `olol dist` (direct and tunnelled) against plain `llama-server --rpc`
  with the same split; the modes loaded at once on their own workers, requests alternating, medians;
* hetero: the planner's split (from measured worker speeds, by the coordinator's default objective,
  latency) against llama.cpp's default (memory-proportional) on workers with different thread counts and
  a CPU cap, both direct.

Workers are real `olol rpc-server` processes (each with its ggml-rpc-server) on loopback; models are
generated (`olol.backends.llamacpp.tiny_model`), sized so compute per token is realistic on this CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import platform
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench._relay_floor import native_relays
from bench._report import median, table, write_section
from olol import eventloop
from olol.backends.llamacpp import process as llama_process
from olol.backends.llamacpp.process import LlamaServerConfig, LlamaServerProcess
from olol.backends.llamacpp.tiny_model import ensure_tiny_model
from olol.split.coordinator import Coordinator, DistConfig
from olol.split.planner import DistPlan
from olol.split.workers import RemoteWorker

# gRPC runs in this process while it spawns llama-server, whose preexec_fn forces fork(): gRPC's fork
# handlers then crash a share of the children (tests/split/conftest.py says more). Spawn without it.
llama_process._PRCTL = None

TOKEN = "bench-token"
# Generated models: the tiny test model (the worst case: 2 ms of compute per token) and one where a
# token costs tens of milliseconds on one core, as real models do on real hardware.
MODELS: dict[str, dict[str, Any]] = {
    "tiny 4x128 f32 (20 MiB)": {"layers": 4, "width": 128},
    "8x1024 f32 (470 MiB)": {"layers": 8, "width": 1024, "ff": 2816, "heads": 16, "kv_heads": 4, "name": "bench8x1024"},
}


@dataclass
class Worker:
    proc: asyncio.subprocess.Process
    target: str  # the rpc-server's gRPC address
    ggml: str  # its ggml worker, for plain llama-server


async def start_worker(threads: int, *extra: str, cgroup: Path | None = None) -> Worker:
    """`olol rpc-server` (and so its ggml worker) as a process; in `cgroup` (cgroup v1 cpu) if given."""
    argv = [sys.executable, "-m", "olol.rpc", "--host", "127.0.0.1", "--port", "0", "-t", str(threads),
            "--token", TOKEN, "--log-level", "warning",
            "--no-worker-isolation",  # plain llama-server and `--transport direct` dial the ggml worker itself
            *extra]  # fmt: skip
    if cgroup is not None:  # join the group before exec, so the worker is born (and measured) in it
        argv = ["sh", "-c", f'echo $$ > {cgroup}/cgroup.procs && exec "$@"', "sh", *argv]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 300)).decode()
    m = re.match(r"READY (\S+):(\d+) worker=(\S+)", line)
    if not m:
        raise RuntimeError(f"rpc-server did not start: {line!r}")
    return Worker(proc, f"127.0.0.1:{m[2]}", m[3])


@asynccontextmanager
async def workers(
    *threads: int, extra: tuple[str, ...] = (), cgroups: tuple[Path | None, ...] = ()
) -> AsyncIterator[list[Worker]]:
    started = []
    try:
        for i, t in enumerate(threads):
            started.append(await start_worker(t, *extra, cgroup=cgroups[i] if i < len(cgroups) else None))
        yield started
    finally:
        for w in started:
            w.proc.terminate()
            await w.proc.wait()


@asynccontextmanager
async def slow_cpu_group(share: float) -> AsyncIterator[Path | None]:
    """A cgroup (v1 cpu controller) capped at `share` of one CPU, standing in for a slower host; None
    where it cannot be made (no cgroup v1 cpu, or not root). Removed afterwards."""
    group = Path("/sys/fs/cgroup/cpu/olol-bench-slow")
    try:
        group.mkdir(exist_ok=True)
        (group / "cpu.cfs_period_us").write_text("10000")  # short periods: throttled within one token
        (group / "cpu.cfs_quota_us").write_text(str(int(10000 * share)))
    except OSError:
        yield None
        return
    try:
        yield group
    finally:
        with contextlib.suppress(OSError):
            group.rmdir()


async def decode_speed(url: str, n_predict: int) -> float:
    body = {"prompt": "Once upon a time", "n_predict": n_predict, "temperature": 0.0, "cache_prompt": False}
    async with aiohttp.ClientSession() as s, s.post(url + "/completion", json=body) as r:
        timings = (await r.json())["timings"]
        return float(timings["predicted_per_second"])


def dist_config(model: Path, ws: list[Worker], transport: str, objective: str = "balanced", **extra: Any) -> DistConfig:
    """The benches' coordinator. "balanced" by default: the transport benches measure a split over
    equal workers, which the latency objective (the coordinator's default) would not make."""
    return DistConfig(
        servers=[w.target for w in ws],
        model=model,
        transport=transport,
        token=TOKEN,
        ctx_size=512,
        threads=1,
        parallel=1,
        objective=objective,
        **extra,
    )


async def plain_server(model: Path, ws: list[Worker], split: tuple[int, ...] | None) -> LlamaServerProcess:
    """Plain llama.cpp: llama-server dialling the ggml workers itself, with `split` or its default."""
    args = ["--rpc", ",".join(w.ggml for w in ws), "-ngl", "999"]
    if split is not None:
        args += ["--tensor-split", ",".join(map(str, split)), "--fit", "off"]
    server = LlamaServerProcess(
        LlamaServerConfig(
            model_path=model,
            ctx_size=512,
            threads=1,
            parallel=1,
            embeddings=False,
            extra_args=tuple(args),
            max_restarts=0,
        )
    )
    await server.start()
    return server


Samples = dict[str, list[float]]


async def interleaved(urls: dict[str, str], n: int, rounds: int) -> tuple[Samples, Samples]:
    """One request per mode per round, the order rotating every round, so that every mode meets the same
    background load (this box is shared). Returns the tokens/s of every request per mode, and per mode its
    ratio to the first mode within each round (neighbouring requests share the box's state, so paired
    ratios cancel slow drifts of its load)."""
    for url in urls.values():
        await decode_speed(url, 4)  # warm-up
    modes = list(urls)
    samples: Samples = {mode: [] for mode in modes}
    ratios: Samples = {mode: [] for mode in modes}
    for r in range(rounds):
        got = {}
        for mode in modes[r % len(modes) :] + modes[: r % len(modes)]:
            got[mode] = await decode_speed(urls[mode], n)
            samples[mode].append(got[mode])
        for mode in modes:
            ratios[mode].append(got[mode] / got[modes[0]])
    return samples, ratios


# Coordinated modes, by the transport each runs: plain llama.cpp comes first, then these.
DIST_MODES = {"direct": "direct", "tunnel": "tunnel", "grpc": "grpc"}
MODE_TITLES = {
    "floor": "plain, two C relays per worker",
    "direct": "olol dist direct",
    "tunnel": "olol dist tunnel (data port)",
    "grpc": "olol dist tunnel (gRPC messages)",
}


async def tokens_epoch(model: Path, sets: list[list[Worker]], n: int, rounds: int) -> tuple[Samples, Samples, str]:
    """Every mode loaded at once, each on its own pair of workers: plain llama.cpp on sets[0], plain
    llama.cpp through two C relays per worker on sets[1] (the floor of any two-hop tunnel), then DIST_MODES."""
    coordinators = {
        mode: Coordinator(dist_config(model, ws, transport))
        for (mode, transport), ws in zip(DIST_MODES.items(), sets[2:], strict=True)
    }
    plain: LlamaServerProcess | None = None
    floor: LlamaServerProcess | None = None
    relays: list[asyncio.subprocess.Process] = []
    try:
        for coordinator in coordinators.values():
            await coordinator.start()
        plans = [c.plan for c in coordinators.values()]
        assert all(p is not None for p in plans)
        split = plans[0].tensor_split  # type: ignore[union-attr]
        assert all(p.tensor_split == split for p in plans)  # type: ignore[union-attr]  # equal workers: one plan
        plain = await plain_server(model, sets[0], split)
        relayed = []
        for w in sets[1]:
            procs, port = await native_relays(int(w.ggml.rsplit(":", 1)[1]), 2)
            relays += procs
            relayed.append(dataclasses.replace(w, ggml=f"127.0.0.1:{port}"))
        floor = await plain_server(model, relayed, split)
        urls = {"plain": plain.url, "floor": floor.url} | {mode: c.url for mode, c in coordinators.items()}
        samples, ratios = await interleaved(urls, n, rounds)
        return samples, ratios, ",".join(map(str, split))
    finally:
        for server in (plain, floor):
            if server is not None:
                await server.close()
        for relay in relays:
            relay.kill()
            await relay.wait()
        for coordinator in coordinators.values():
            await coordinator.close()


async def bench_tokens(rounds: int = 8) -> str:
    rows = []
    ms_per_token: list[float] = []  # plain llama.cpp, per model
    modes = ["plain", "floor", *DIST_MODES]
    added: list[str] = []
    for label, params in MODELS.items():
        model = ensure_tiny_model(**params)
        n = 64 if params["layers"] == 4 else 32
        per_epoch = rounds if params["layers"] > 4 else 2 * rounds
        samples: Samples = {mode: [] for mode in modes}
        ratios: Samples = {mode: [] for mode in modes}
        async with workers(*([1] * (2 * len(modes))), extra=("--no-speed-test",)) as ws:
            pairs = [ws[i : i + 2] for i in range(0, len(ws), 2)]
            # Worker pairs differ in speed on this box (measured: up to 1.4x between pairs started one after
            # the other), so every mode runs on every pair once: a Latin square of one epoch per mode.
            for epoch in range(len(modes)):
                got, paired, split = await tokens_epoch(model, pairs[epoch:] + pairs[:epoch], n, per_epoch)
                for mode in samples:
                    samples[mode] += got[mode]
                    ratios[mode] += paired[mode]
        speed = {m: median(v) for m, v in samples.items()}
        ratio = {m: median(v) for m, v in ratios.items()}
        print(label, speed, ratio, flush=True)
        ms_per_token.append(1e3 / speed["plain"])
        rows.append([label, split, f"{speed['plain']:.1f}"] + [f"{speed[m]:.1f} ({ratio[m]:.2f}x)" for m in modes[1:]])
        # What each mode adds to a token, per worker the token crosses (medians of the speeds).
        per_worker = 1e6 / len(split.split(","))
        costs = [f"{m} +{(1 / speed[m] - 1 / speed['plain']) * per_worker:.0f} us" for m in modes[1:]]
        added.append(f"{label}: " + ", ".join(costs))
    per_mode = len(modes) * rounds
    return (
        "### Decode tokens/s: olol dist vs plain `llama-server --rpc`, same split, two workers\n\n"
        f"Medians of {per_mode} (8x1024) and {2 * per_mode} (tiny) greedy requests per mode. The {len(modes)} "
        "modes are loaded at once, each on its own pair of workers, and requests alternate between them; every "
        "mode runs on every worker pair for an equal share of the requests. Ratios are medians of the per-round "
        "ratios to plain llama.cpp. Every process on one shared 2-core box (llama-server -t 1, each worker "
        "-t 1), loopback.\n\n"
        + table(["model", "split", "plain llama.cpp", *(MODE_TITLES[m] for m in modes[1:])], rows)
        + "\n\nTargets: direct >= 0.97x, tunnelled >= 0.9x. `olol dist --transport direct` starts exactly the "
        "llama-server command line of the plain column, so its distance from 1.00x is this shared box's noise. "
        "The tunnel (the default, `--transport tunnel`) carries the ggml bytes on each rpc-server's data port, "
        "admitted by a ticket from its authenticated gRPC service; `--transport grpc` carries them in gRPC "
        "messages, for networks where only the gRPC port is open. Each costs a fixed amount per token and "
        "worker (see the round-trip section below); how much that weighs depends on the compute per token, so "
        f"the tiny model ({ms_per_token[0]:.1f} ms per token here, two round trips: one GET_TENSOR per worker) "
        "is the worst case and bigger models approach 1.0x. Time added per token and worker, from the median "
        "speeds: " + "; ".join(added) + ".\n\n"
        "The floor column is plain llama.cpp with two minimal C relays (`bench/native_relay.c`: poll, read, "
        "write; no ticket, no checks, no interpreter) between llama-server and each worker: the two hops any "
        "tunnel that authenticates at the coordinator and validates at the worker must make. On the tiny "
        "model even that floor stays under 0.9x on this box, so no such tunnel meets the target there; the "
        "data port's distance from the floor is what the relays' own code costs. Per token, the hops cost "
        "about twice what the round-trip bench below measures in a tight loop: between tokens the relays "
        "sleep while the workers compute, and on two shared virtual cores a wake-up after idling costs more. "
        "Models worth splitting take tens to hundreds of ms per token, against which ~0.1-0.3 ms per worker "
        "is 1% or less.\n"
    )


SLOW_SHARE = 0.15  # of one CPU, for the slow worker
OBJECTIVE = DistConfig.objective  # hetero measures what the coordinator does by default


def _split(plan: DistPlan, ws: list[Worker]) -> str:
    """The plan's layer counts per worker, in the order the workers were listed (a worker left out: 0),
    so that a reordered plan reads like the default split it is compared with."""
    counts = {d.address: a.layers for d, a in zip(plan.devices, plan.plan.assignments, strict=True)}
    return ",".join(str(counts.get(w.target, 0)) for w in ws)


async def _hetero_pair(ws: list[Worker], blocks: int, reqs: int) -> tuple[dict[str, float], float, str, list[str]]:
    """Planner split vs llama.cpp's default on one pair of workers: (tokens/s per split, ratio, plan, speeds)."""
    model = ensure_tiny_model(**MODELS["8x1024 f32 (470 MiB)"])
    samples: Samples = {"default": [], "planner": []}
    paired: list[float] = []
    split = ""
    caps = [await RemoteWorker(w.target, token=TOKEN).capabilities() for w in ws]
    for block in range(blocks):
        got: dict[str, float] = {}
        for mode in ("default", "planner") if block % 2 == 0 else ("planner", "default"):
            stop: Callable[[], Awaitable[None]]
            if mode == "planner":
                coordinator = Coordinator(dist_config(model, ws, "direct", objective=OBJECTIVE))
                await coordinator.start()
                assert coordinator.plan is not None
                split = _split(coordinator.plan, ws)
                url, stop = coordinator.url, coordinator.close
            else:
                server = await plain_server(model, ws, None)
                url, stop = server.url, server.close
            try:
                await decode_speed(url, 4)
                speeds = [await decode_speed(url, 32) for _ in range(reqs)]
            finally:
                await stop()
            samples[mode] += speeds
            got[mode] = median(speeds)
        paired.append(got["planner"] / got["default"])
        print("hetero block", block, got, split, flush=True)
    return {m: median(v) for m, v in samples.items()}, median(paired), split, [f"{c.speed / 1e9:.2f}" for c in caps]


async def bench_hetero(blocks: int = 4, reqs: int = 4) -> str:
    # One pair at a time, each split loaded in turn: two llama-servers on one pair cannot both hold the
    # workers, and separate pairs differ in speed on this box. Speeds are what the workers measure at start.
    rows: list[list[str]] = []
    async with workers(2, 1) as ws:
        speed, ratio, split, caps = await _hetero_pair(ws, blocks, reqs)
        rows.append(["2 threads vs 1 thread", " / ".join(caps), f"{speed['planner']:.2f} ({split})",
                     f"{speed['default']:.2f}", f"{ratio:.2f}x"])  # fmt: skip
    async with slow_cpu_group(SLOW_SHARE) as slow:
        if slow is not None:
            async with workers(1, 1, cgroups=(None, slow)) as ws:
                speed, ratio, split, caps = await _hetero_pair(ws, blocks, reqs)
                label = f"1 thread vs 1 thread capped at {SLOW_SHARE:.0%} of a CPU (cgroup)"
                rows.append([label, " / ".join(caps), f"{speed['planner']:.2f} ({split})",
                             f"{speed['default']:.2f}", f"{ratio:.2f}x"])  # fmt: skip
    return (
        "### Planner split vs llama.cpp's default on heterogeneous workers\n\n"
        "Two workers per setup: different thread counts, and a CPU cap standing in for a much slower host. "
        f"The 8x1024 model, both splits direct, one at a time on the same workers: {blocks} blocks of {reqs} "
        "requests per split, the order alternating; the ratio is the median of per-block ratios (target >= "
        "1.2x). Thread counts only make a difference when the box has the cores free: the stages of one "
        "token run one after the other, so a 2-thread worker can use both cores while the other waits.\n\n"
        + table(
            [
                "workers",
                "measured speed (GB/s)",
                f"planner split ({OBJECTIVE}): tokens/s (layers per worker)",
                "llama.cpp default (by memory): tokens/s",
                "planner / default",
            ],
            rows,
        )
        + "\n\nllama.cpp's default splits by free memory, which is equal here, and ignores speed. The planner "
        "uses the speeds the workers measured (a matrix-vector product each, at start) and, by default "
        f"(`--objective {OBJECTIVE}`), minimises the time per token of one request: llama.cpp runs a token's "
        "stages one after the other, so that time is the sum of the stage times plus a network round trip "
        "per worker used, not the slowest stage. A slower worker gets layers only when the faster ones lack "
        "the memory, and a worker is used at all only when its share saves more than its round trip; the "
        "split column lists layers per worker in the order above (0: left out). `--objective balanced` "
        "(stages made even, the least slowest stage) is for serving where stages overlap; for one request "
        "it can give a slow worker a share that costs more time than it saves.\n"
    )


def machine() -> str:
    load = os.getloadavg()[0]
    return (
        f"{platform.machine()}, {os.cpu_count()} cores shared with other work (load average {load:.1f} at the "
        f"end of the run), Python {platform.python_version()}, llama.cpp of llama-cpp-python 0.3.36."
    )


def publish(part: str, command: str, text: str) -> None:
    """Write one section of BENCHMARKS.md: its title, how to re-run it and on what, then the figures."""
    title, _, body = text.partition("\n\n")
    heading = title.replace("###", "## Distributed:")
    write_section(f"dist-{part}", f"{heading}\n\n`python -m {command} {part}`; {machine()}\n\n{body}")


async def main(parts: list[str]) -> None:
    benches: dict[str, Callable[[], Awaitable[str]]] = {"tokens": bench_tokens, "hetero": bench_hetero}
    for part in parts:
        if part not in benches:
            raise SystemExit(f"unknown part {part!r}: {', '.join(benches)}")
        publish(part, "bench.bench_dist", await benches[part]())


if __name__ == "__main__":
    eventloop.run(main(sys.argv[1:] or ["tokens", "hetero"]))  # the loop `olol dist` runs on
