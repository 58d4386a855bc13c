"""The agent's two gRPC servers, threaded (`--threaded`) vs grpc.aio (`--async`), in one run.

    python -m bench.bench_agent_servers

One simulated Ollama host (its own process, no token pacing, slots for every
stream: the agent is the queue) behind `olol server` in either mode; the
benchmark process keeps CONCURRENCY generate streams of RESPONSE_TOKENS tokens
in flight through the agent (the proxy's own gRPC client, `AgentBackend`) until
REQUESTS are done. Rounds alternate the modes so both see the same machine;
figures are medians over the rounds. The agent's CPU time (user + system, all
threads) per request is read from /proc, so a mode that merely idles faster
does not look cheaper.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass

import psutil

from bench._report import median, table, write_section
from bench.bench_proxy_harness import Cluster, machine
from olol.backends.agent import AgentBackend

ROUNDS = 5
REQUESTS = 300
CONCURRENCY = 16
RESPONSE_TOKENS = 32
MODES = ("--threaded", "--async")


@dataclass
class Run:
    requests_s: float
    tokens_s: float
    cpu_ms_per_request: float


async def _load(target: str) -> tuple[int, float]:
    backend = AgentBackend(target)
    await backend.start()
    left = REQUESTS
    tokens = 0

    async def worker() -> None:
        nonlocal left, tokens
        while left > 0:
            left -= 1
            async for chunk in backend.generate({"model": "llama3.2", "prompt": "hi", "stream": True}):
                tokens += 0 if chunk.get("done") else 1

    try:
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return tokens, time.perf_counter() - start
    finally:
        await backend.close()


async def _round(cluster: Cluster, sim_url: str, mode: str) -> Run:
    agent = await cluster.spawn(
        f"agent{mode}",
        [sys.executable, "-m", "olol", "server", "--host", "127.0.0.1", "--port", "0", "--ollama-host", sim_url,
         "--parallel", str(CONCURRENCY), "--log-level", "warning", mode],
    )
    try:
        proc = psutil.Process(agent.proc.pid)
        await _load(agent.url)  # warm-up: connections, first model listing
        before = proc.cpu_times()
        tokens, wall = await _load(agent.url)
        after = proc.cpu_times()
        cpu = (after.user - before.user) + (after.system - before.system)
        return Run(REQUESTS / wall, tokens / wall, 1000 * cpu / REQUESTS)
    finally:
        await cluster.stop(agent)


def _ratio(runs: dict[str, list[Run]], field: str) -> float:
    threaded, aio = (median([getattr(r, field) for r in runs[m]]) for m in MODES)
    return threaded / aio


async def main() -> None:
    header = machine()
    runs: dict[str, list[Run]] = {m: [] for m in MODES}
    async with Cluster() as cluster:
        sim = await cluster.sim("sim", parallel=4 * CONCURRENCY, response_tokens=RESPONSE_TOKENS)
        for i in range(ROUNDS):
            for mode in MODES if i % 2 == 0 else tuple(reversed(MODES)):
                runs[mode].append(await _round(cluster, sim.url, mode))
    rows = [
        [mode, f"{median([r.requests_s for r in rs]):.0f}", f"{median([r.tokens_s for r in rs]):.0f}",
         f"{median([r.cpu_ms_per_request for r in rs]):.2f}"]
        for mode, rs in runs.items()
    ]
    section = (
        f"## Agent: threaded gRPC server vs grpc.aio\n\n{header}. {REQUESTS} generate streams of "
        f"{RESPONSE_TOKENS} tokens, {CONCURRENCY} in flight, through `olol server` over one simulated Ollama "
        f"host; medians of {ROUNDS} alternating rounds.\n\n"
        + table(["mode", "requests/s", "tokens/s", "agent CPU ms/request"], rows)
        + f"\n\nThreaded vs grpc.aio: {_ratio(runs, 'requests_s'):.2f}x the requests/s at "
        f"{_ratio(runs, 'cpu_ms_per_request'):.2f}x the agent's CPU per request. The threaded server stays "
        "the default while it serves more (issue 13: keep it only if it wins something a user would notice)."
    )
    print(section)
    write_section("agent-servers", section)


if __name__ == "__main__":
    asyncio.run(main())
