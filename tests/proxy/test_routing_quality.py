"""The default policy on a heterogeneous cluster: clearly better than the round-robin baseline."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from tests.proxy.helpers import proxy_over

GEN = {"model": "llama3.2", "prompt": "x", "stream": False}


async def mean_latency(url: str, clients: int = 2, each: int = 6) -> float:
    latencies: list[float] = []
    async with aiohttp.ClientSession() as http:
        async def client() -> None:
            for _ in range(each):
                started = time.monotonic()
                async with http.post(url + "/api/generate", json=GEN) as r:
                    assert r.status == 200
                    await r.read()
                latencies.append(time.monotonic() - started)

        await asyncio.gather(*(client() for _ in range(clients)))
    return sum(latencies) / len(latencies)


async def test_adaptive_beats_round_robin_on_mixed_speeds(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    results = {}
    for balancer in ("round_robin", "adaptive"):
        # Fresh hosts each time: the policy starts cold, knowing nothing about either host.
        fast = await ollama_sim_factory(token_rate=400, parallel=2)
        slow = await ollama_sim_factory(token_rate=50, parallel=2)
        async with proxy_over(slow, fast, balancer=balancer, default_parallel=2) as proxy:
            await mean_latency(proxy.url, clients=1, each=2)  # warm up: load the model, meet both hosts
            results[balancer] = await mean_latency(proxy.url)
    assert results["adaptive"] < 0.7 * results["round_robin"], results
