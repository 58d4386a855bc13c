"""Routing quality on a heterogeneous cluster: adaptive vs round-robin vs least-connections, in one run.

    python -m bench.bench_proxy_routing

Three simulated Ollama hosts at 1x, 2x and 4x speed (token rate and
prompt-evaluation latency scaled together), two parallel slots each, behind
`olol proxy --balancer ...`. CLIENTS clients send a fixed, seeded mix of
`/api/generate` requests (short and long prompts, 8 to 64 tokens out), each
waiting for its answer before sending the next. Every run starts a fresh proxy
(the adaptive policy starts knowing nothing), warms it with the same few
requests for every policy, then measures the mean request latency. Policies
take turns within each round, so all see the same machine; figures are medians
over the rounds. Targets: adaptive <= 0.7x round-robin and <= 0.9x least-connections.

The simulator's prompt evaluation is a fixed latency per host, not per prompt
token, so long prompts here cost bandwidth and parsing, not host time.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench._report import median, table, write_section
from bench.bench_proxy_harness import Cluster, figure, machine, save_plot

POLICIES = ("adaptive", "least_connections", "round_robin")
SPEEDS = (1, 2, 4)
BASE_TOKEN_RATE = 40.0  # tokens/s of the 1x host
BASE_PROMPT_LATENCY = 0.06  # seconds of prompt evaluation on the 1x host
SLOTS = 2
CLIENTS = 4
REQUESTS = 15  # per client per run
WARMUP = 6
ROUNDS = 3
TARGETS = {"round_robin": 0.7, "least_connections": 0.9}

_WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "near", "river", "bank", "at", "dawn")


def workload(seed: int, n: int) -> list[dict[str, Any]]:
    """`n` generate requests: a seeded mix of prompt sizes and output lengths."""
    rng = random.Random(seed)
    requests = []
    for i in range(n):
        words = rng.choice((6, 300))
        prompt = f"[{seed}.{i}] " + " ".join(rng.choice(_WORDS) for _ in range(words))
        tokens = rng.choices((8, 24, 64), weights=(4, 3, 3))[0]
        requests.append({"model": "llama3.2", "prompt": prompt, "stream": False, "options": {"num_predict": tokens}})
    return requests


@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)
    served: Counter[str] = field(default_factory=Counter)  # requests per host speed, e.g. "4x"

    @property
    def mean(self) -> float:
        return sum(self.latencies) / len(self.latencies)


async def drive(url: str, clients: list[list[dict[str, Any]]], speed_of: dict[str, str], run: Run | None) -> None:
    async with aiohttp.ClientSession() as http:

        async def client(requests: list[dict[str, Any]]) -> None:
            for body in requests:
                started = time.perf_counter()
                async with http.post(url + "/api/generate", json=body) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"HTTP {resp.status}: {await resp.text()}")
                    host = resp.headers.get("X-OLOL-Host", "")
                if run is not None:
                    run.latencies.append(time.perf_counter() - started)
                    run.served[speed_of.get(host, host)] += 1

        await asyncio.gather(*(client(c) for c in clients))


async def measure() -> tuple[dict[str, list[Run]], str]:
    where = machine()
    results: dict[str, list[Run]] = {p: [] for p in POLICIES}
    async with Cluster() as cluster:
        hosts = {}
        for speed in SPEEDS:
            sim = await cluster.sim(
                f"host-{speed}x",
                token_rate=BASE_TOKEN_RATE * speed,
                latency=BASE_PROMPT_LATENCY / speed,
                parallel=SLOTS,
            )
            hosts[sim.url] = f"{speed}x"
        warmup = [workload(1000 + c, WARMUP // 2) for c in range(2)]
        for round_ in range(ROUNDS):
            clients = [workload(round_ * 100 + c, REQUESTS) for c in range(CLIENTS)]
            for policy in POLICIES[round_ % len(POLICIES) :] + POLICIES[: round_ % len(POLICIES)]:
                proxy = await cluster.proxy(
                    list(hosts), "--balancer", policy, "--default-parallel", str(SLOTS), name=f"proxy-{policy}-{round_}"
                )
                await drive(proxy.url, warmup, hosts, None)
                run = Run()
                await drive(proxy.url, clients, hosts, run)
                results[policy].append(run)
                await cluster.stop(proxy)
    return results, where


def plot(results: dict[str, list[Run]]) -> str:
    fig = figure(8, 3.4)
    left, right = fig.subplots(1, 2)
    names = list(results)
    means = [median([r.mean for r in runs]) for runs in results.values()]
    left.bar(names, means, color="0.55")
    for i, runs in enumerate(results.values()):
        left.scatter([i] * len(runs), [r.mean for r in runs], color="black", s=10, zorder=3)
    left.set_ylabel("mean request latency (s)")
    left.set_title("lower is better (dots: rounds)")
    bottom = [0.0] * len(names)
    for speed in (f"{s}x" for s in SPEEDS):
        share = []
        for runs in results.values():
            total = sum(sum(r.served.values()) for r in runs)
            share.append(sum(r.served[speed] for r in runs) / max(1, total))
        right.bar(names, share, bottom=bottom, label=f"{speed} host")
        bottom = [b + s for b, s in zip(bottom, share, strict=True)]
    right.set_ylabel("share of requests")
    right.set_title("where requests went")
    right.legend(loc="lower left", fontsize="small", framealpha=0.9)
    for ax in (left, right):
        ax.tick_params(axis="x", labelsize="small")
    return save_plot(fig, "proxy_routing")


def report(results: dict[str, list[Run]], where: str) -> str:
    mean = {p: median([r.mean for r in runs]) for p, runs in results.items()}
    rows = []
    for policy, runs in results.items():
        total = sum(sum(r.served.values()) for r in runs)
        shares = " / ".join(f"{100 * sum(r.served[f'{s}x'] for r in runs) / max(1, total):.0f}%" for s in SPEEDS)
        p95 = median([sorted(r.latencies)[int(0.95 * (len(r.latencies) - 1))] for r in runs])
        rows.append(
            [policy, f"{mean[policy]:.3f} s", f"{p95:.3f} s", f"{mean[policy] / mean['adaptive']:.2f}x", shares]
        )
    verdicts = []
    for baseline, target in TARGETS.items():
        ratio = median([a.mean / b.mean for a, b in zip(results["adaptive"], results[baseline], strict=True)])
        verdicts.append(
            f"adaptive / {baseline.replace('_', '-')} = **{ratio:.2f}x** (target <= {target}x: "
            f"{'met' if ratio <= target else 'NOT met'})"
        )
    image = plot(results)
    speeds = ", ".join(f"{s}x = {BASE_TOKEN_RATE * s:g} tokens/s" for s in SPEEDS)
    return "\n\n".join(
        [
            "## Routing quality on a heterogeneous cluster",
            f"`python -m bench.bench_proxy_routing`. {where}.",
            f"Three simulated hosts ({speeds}; prompt evaluation {BASE_PROMPT_LATENCY * 1e3:g} ms / speed), "
            f"{SLOTS} slots each; {CLIENTS} closed-loop clients x {REQUESTS} non-streaming `/api/generate` "
            f"requests per run (6- or 300-word prompts, 8/24/64 tokens out, seeded); a fresh proxy per run, warmed "
            f"with the same {WARMUP} requests. Medians of {ROUNDS} rounds; ratios are medians of per-round ratios.",
            table(["policy", "mean latency", "p95 latency", "vs adaptive", "served by 1x / 2x / 4x"], rows),
            "; ".join(verdicts) + ".",
            f"![mean latency per policy and where requests went]({image})",
        ]
    )


def main() -> None:
    results, where = asyncio.run(measure())
    section = report(results, where)
    write_section("proxy-routing", section)
    print(section)


if __name__ == "__main__":
    main()
