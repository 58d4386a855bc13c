"""Latency `olol proxy` adds over calling the host directly, side by side in one run.

    python -m bench.bench_proxy_latency

One simulated Ollama host that answers as fast as it can (no token pacing, no
prompt latency) and `olol proxy` in front of it, each in its own process. One
client sends one request at a time over kept-alive connections, alternating
direct and proxied requests (the order flips every pair) so both paths see the
same machine state. Two measures:

* non-streaming: a whole `/api/generate` with `stream: false` (8 tokens);
* time to first token: a streaming `/api/generate`, until its first NDJSON line.

Added latency = proxied percentile - direct percentile, computed per run; the
section reports the median over the runs. Targets: p50 <= 1 ms, p99 <= 3 ms.
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import psutil

from bench._report import median, table, write_section
from bench.bench_proxy_harness import Cluster, figure, machine, percentile, save_plot

RUNS = 5
PAIRS = 600  # direct + proxied samples per measure per run
WARMUP = 100
TARGET_P50_MS = 1.0
TARGET_P99_MS = 3.0

_BODY = {"model": "llama3.2", "prompt": "Why is the sky blue?", "options": {"num_predict": 8}}
UNARY = json.dumps({**_BODY, "stream": False}).encode()
STREAM = json.dumps({**_BODY, "stream": True}).encode()
HEADERS = {"Content-Type": "application/json"}

Probe = Callable[[aiohttp.ClientSession, str], Awaitable[float]]


async def whole_reply(http: aiohttp.ClientSession, url: str) -> float:
    started = time.perf_counter()
    async with http.post(url + "/api/generate", data=UNARY, headers=HEADERS) as resp:
        await resp.read()
        elapsed = time.perf_counter() - started
        if resp.status != 200:
            raise RuntimeError(f"{url}: HTTP {resp.status}")
    return elapsed


async def first_token(http: aiohttp.ClientSession, url: str) -> float:
    started = time.perf_counter()
    async with http.post(url + "/api/generate", data=STREAM, headers=HEADERS) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{url}: HTTP {resp.status}")
        await resp.content.readline()
        elapsed = time.perf_counter() - started
        await resp.read()  # drain, so the connection goes back to the pool
    return elapsed


@dataclass
class Samples:
    direct: list[float] = field(default_factory=list)
    proxy: list[float] = field(default_factory=list)
    proxy_cpu: float = 0.0  # CPU seconds (user + system) the proxy process spent per proxied request
    host_cpu: float = 0.0  # the same for the host, per request it answered (direct or proxied)

    def added_ms(self, q: float) -> float:
        return (percentile(self.proxy, q) - percentile(self.direct, q)) * 1e3


Target = tuple[aiohttp.ClientSession, str]


async def run_once(direct: Target, proxy: Target, probe: Probe, pairs: int) -> Samples:
    samples = Samples()
    for i in range(pairs):
        order = ((direct, samples.direct), (proxy, samples.proxy))
        for (http, url), into in order if i % 2 else order[::-1]:
            into.append(await probe(http, url))
    return samples


MEASURES: dict[str, Probe] = {"non-streaming (whole reply)": whole_reply, "time to first token": first_token}


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def measure() -> tuple[dict[str, list[Samples]], str]:
    where = machine()
    async with Cluster() as cluster:
        host = await cluster.sim("host", parallel=4)
        proxy = await cluster.proxy([host.url], "--default-parallel", "4")
        proxy_proc, host_proc = psutil.Process(proxy.proc.pid), psutil.Process(host.proc.pid)
        results: dict[str, list[Samples]] = {name: [] for name in MEASURES}
        # A session per path, so neither ever waits on the other's connections.
        async with aiohttp.ClientSession() as direct_http, aiohttp.ClientSession() as proxy_http:
            direct, proxied = (direct_http, host.url), (proxy_http, proxy.url)
            for probe in MEASURES.values():
                await run_once(direct, proxied, probe, WARMUP)
            gc.collect()
            gc.disable()  # the client's collector pausing mid-request is noise in both columns
            try:
                for _ in range(RUNS):
                    for name, probe in MEASURES.items():
                        before = cpu_seconds(proxy_proc), cpu_seconds(host_proc)
                        samples = await run_once(direct, proxied, probe, PAIRS)
                        samples.proxy_cpu = (cpu_seconds(proxy_proc) - before[0]) / PAIRS
                        samples.host_cpu = (cpu_seconds(host_proc) - before[1]) / (2 * PAIRS)
                        results[name].append(samples)
            finally:
                gc.enable()
    return results, where


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def verdict(value: float, target: float) -> str:
    return f"{value:.2f} ms (target <= {target:g} ms: {'met' if value <= target else 'NOT met'})"


def plot(results: dict[str, list[Samples]]) -> str:
    fig = figure(9, 3.6)
    axes = fig.subplots(1, len(results))
    for ax, (name, runs) in zip(axes, results.items(), strict=True):
        for label, values in (
            ("direct", [v for r in runs for v in r.direct]),
            ("through olol proxy", [v for r in runs for v in r.proxy]),
        ):
            ordered = sorted(v * 1e3 for v in values)
            ax.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=label)
        ax.set_title(name)
        ax.set_xlabel("latency (ms)")
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fraction of requests")
    axes[0].legend(loc="lower right")
    return save_plot(fig, "proxy_latency")


def report(results: dict[str, list[Samples]], where: str) -> str:
    rows = []
    for name, runs in results.items():
        rows.append(
            [
                name,
                ms(median([percentile(r.direct, 50) for r in runs])),
                ms(median([percentile(r.proxy, 50) for r in runs])),
                verdict(median([r.added_ms(50) for r in runs]), TARGET_P50_MS),
                ms(median([percentile(r.direct, 99) for r in runs])),
                ms(median([percentile(r.proxy, 99) for r in runs])),
                verdict(median([r.added_ms(99) for r in runs]), TARGET_P99_MS),
            ]
        )
    headers = ["measure", "direct p50", "proxy p50", "added p50", "direct p99", "proxy p99", "added p99"]
    cpu = "; ".join(
        f"{name}: proxy {median([r.proxy_cpu for r in runs]) * 1e6:.0f} us per request, host "
        f"{median([r.host_cpu for r in runs]) * 1e6:.0f} us"
        for name, runs in results.items()
    )
    image = plot(results)
    return "\n\n".join(
        [
            "## Latency added by the proxy",
            f"`python -m bench.bench_proxy_latency`. {where}.",
            f"One simulated Ollama host with no token pacing, `olol proxy` in front of it, each in its own process; "
            f"one client, one request at a time, direct and proxied requests alternating. `/api/generate` for 8 "
            f"tokens. Added = proxied percentile - direct percentile within a run; every figure is the median of "
            f"{RUNS} runs of {PAIRS} requests per path.",
            table(headers, rows),
            f"CPU time (user + system, medians of the runs) - {cpu}. Wall-clock latency includes waiting for a "
            "CPU when the box is busy (see its CPU pressure above); CPU time is what each process itself spends.",
            f"![latency CDFs, direct vs through the proxy]({image})",
        ]
    )


def main() -> None:
    results, where = asyncio.run(measure())
    section = report(results, where)
    write_section("proxy-latency", section)
    print(section)


if __name__ == "__main__":
    main()
