"""OLOL's keep-alive HTTP/1.1 pool (`olol.backends.ollama._http1`) vs aiohttp's client, in one run.

    python -m bench.bench_http1

What the Ollama adapter's hot path does, both ways: POST `/api/generate` to one
simulated Ollama host (its own process, no token pacing) and read the streamed
reply line by line; CONCURRENCY calls in flight until REQUESTS are done. Rounds
alternate the two clients; figures are medians. The benchmark process's own CPU
time per request is the client's cost (the host runs elsewhere), which is what
the pool exists to cut: a proxy in front of fast hosts spends it on every call.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import aiohttp
import psutil

from bench._report import median, table, write_section
from bench.bench_proxy_harness import Cluster, machine
from olol.backends.ollama._http1 import HttpPool

ROUNDS = 5
REQUESTS = 2000
CONCURRENCY = 16
RESPONSE_TOKENS = 8
BODY = json.dumps({"model": "llama3.2", "prompt": "hi", "stream": True}).encode()

Call = Callable[[], Awaitable[int]]


async def _run(call: Call) -> tuple[float, float]:
    left = REQUESTS
    me = psutil.Process()

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call()

    before, start = me.cpu_times(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    wall, after = time.perf_counter() - start, me.cpu_times()
    cpu = (after.user - before.user) + (after.system - before.system)
    return REQUESTS / wall, 1e6 * cpu / REQUESTS


def _ratio(results: dict[str, list[tuple[float, float]]], i: int) -> float:
    ours, theirs = (median([r[i] for r in results[name]]) for name in ("_http1 HttpPool", "aiohttp ClientSession"))
    return ours / theirs


async def main() -> None:
    header = machine()
    results: dict[str, list[tuple[float, float]]] = {"aiohttp ClientSession": [], "_http1 HttpPool": []}
    async with Cluster() as cluster:
        sim = await cluster.sim("sim", parallel=4 * CONCURRENCY, response_tokens=RESPONSE_TOKENS)
        url = sim.url
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            pool = HttpPool(url)

            async def with_aiohttp() -> int:
                lines = 0
                async with session.post(url + "/api/generate", data=BODY,
                                        headers={"Content-Type": "application/json"}) as resp:
                    async for _line in resp.content:
                        lines += 1
                return lines

            async def with_pool() -> int:
                lines = 0
                resp = await pool.post("/api/generate", BODY)
                try:
                    while await resp.readline():
                        lines += 1
                finally:
                    resp.close()
                return lines

            calls: dict[str, Call] = {"aiohttp ClientSession": with_aiohttp, "_http1 HttpPool": with_pool}
            for call in calls.values():  # warm-up: connections, code paths
                await call()
            try:
                for i in range(ROUNDS):
                    names = list(calls) if i % 2 == 0 else list(reversed(calls))
                    for name in names:
                        results[name].append(await _run(calls[name]))
            finally:
                pool.close()
    rows = [
        [name, f"{median([r[0] for r in rs]):.0f}", f"{median([r[1] for r in rs]):.0f}"]
        for name, rs in results.items()
    ]
    section = (
        f"## Ollama adapter's HTTP client: `_http1` pool vs aiohttp\n\n{header}. {REQUESTS} streamed "
        f"`/api/generate` calls ({RESPONSE_TOKENS} tokens), {CONCURRENCY} in flight, to one simulated Ollama "
        f"host; medians of {ROUNDS} alternating rounds; CPU is the client process's.\n\n"
        + table(["client", "requests/s", "client CPU us/request"], rows)
        + f"\n\nThe pool (its replies parsed by httptools' llhttp): {_ratio(results, 0):.2f}x aiohttp's requests/s "
        f"at {_ratio(results, 1):.2f}x its CPU per request, which is what keeps it on the inference hot path "
        "(everything else goes through aiohttp)."
    )
    print(section)
    write_section("http1-client", section)


if __name__ == "__main__":
    asyncio.run(main())
