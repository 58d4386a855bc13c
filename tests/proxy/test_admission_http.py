"""Admission end to end: wait in the model's queue, then 503 + Retry-After with Ollama's message."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.proxy.helpers import proxy_over
from tests.support.ollama_sim import BUSY_MESSAGE

GEN = {"model": "llama3.2", "prompt": "x", "stream": False}


async def test_queued_request_is_served_when_a_slot_frees(ollama_sim) -> None:  # type: ignore[no-untyped-def]
    ollama_sim.latency = 0.2
    async with proxy_over(ollama_sim, default_parallel=1, max_queue_wait=5) as proxy, \
            aiohttp.ClientSession() as http:
        async def one() -> tuple[int, str]:
            async with http.post(proxy.url + "/api/generate", json=GEN) as r:
                return r.status, r.headers.get("X-OLOL-Route", "")

        results = await asyncio.gather(*(one() for _ in range(3)))
    assert [s for s, _ in results] == [200, 200, 200]
    assert sum("queued=" in route for _, route in results) == 2
    assert ollama_sim.max_in_flight == 1  # the proxy, not the host, held the queue


async def test_wait_past_max_queue_wait_is_503_with_retry_after(ollama_sim) -> None:  # type: ignore[no-untyped-def]
    ollama_sim.latency = 1.0
    async with proxy_over(ollama_sim, default_parallel=1, max_queue_wait=0.2) as proxy, \
            aiohttp.ClientSession() as http:
        holder = asyncio.create_task(http.post(proxy.url + "/api/generate", json=GEN))
        await asyncio.sleep(0.05)
        async with http.post(proxy.url + "/api/generate", json=GEN) as r:
            assert r.status == 503
            assert r.headers["Retry-After"] == "1"
            assert await r.json() == {"error": BUSY_MESSAGE}
        async with http.post(proxy.url + "/v1/chat/completions",
                             json={"model": "llama3.2", "messages": [{"role": "user", "content": "x"}]}) as r:
            assert r.status == 503 and r.headers["Retry-After"] == "1"
            assert (await r.json())["error"]["message"] == BUSY_MESSAGE
        async with http.get(proxy.url + "/metrics") as r:
            assert 'olol_queue_timeouts_total{model="llama3.2:latest"} 2.0' in await r.text()
        (await holder).release()


async def test_full_queue_refuses_immediately(ollama_sim) -> None:  # type: ignore[no-untyped-def]
    ollama_sim.latency = 0.4
    async with proxy_over(ollama_sim, default_parallel=1, max_queue=1, max_queue_wait=5) as proxy, \
            aiohttp.ClientSession() as http:
        holder = asyncio.create_task(http.post(proxy.url + "/api/generate", json=GEN))
        await asyncio.sleep(0.05)
        queued = asyncio.create_task(http.post(proxy.url + "/api/generate", json=GEN))
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with http.post(proxy.url + "/api/generate", json=GEN) as r:
            assert r.status == 503 and loop.time() - started < 0.5
        for task in (holder, queued):
            (await task).release()
