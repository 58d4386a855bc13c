"""On-demand loading: a request for a model no host has places it once, however many ask at the same time."""

from __future__ import annotations

import asyncio

import aiohttp
import ollama
import pytest

from tests.proxy.helpers import proxy_over
from tests.support.ollama_sim import ModelSpec

NEW = "qwen2.5:0.5b"  # in the simulators' default registry, on no host


async def test_ten_concurrent_requests_trigger_exactly_one_pull(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    sims = await ollama_sim_factory.many(2, pull_delay=0.05, parallel=4)  # a pull of about 1 s
    async with proxy_over(*sims, pull_on_demand=True) as proxy:
        client = ollama.AsyncClient(host=proxy.url)
        requests = [asyncio.create_task(client.generate(model=NEW, prompt=f"q{i}")) for i in range(10)]
        # While the pull runs, /api/status shows it, with per-host progress.
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                async with http.get(proxy.url + "/api/status") as r:
                    running = (await r.json())["placements"]["running"]
                if running:
                    break
                await asyncio.sleep(0.01)
        assert running and running[0]["model"] == NEW and running[0]["reason"] == "on-demand"
        replies = await asyncio.gather(*requests)
        assert all(r.done and r.model == NEW for r in replies)
        assert sum(s.requests["/api/pull"] for s in sims) == 1
        assert proxy.context.placement is not None and proxy.context.placement.on_demand_pulls == 1


async def test_off_by_default(ollama_sim) -> None:  # type: ignore[no-untyped-def]
    async with proxy_over(ollama_sim) as proxy:
        with pytest.raises(ollama.ResponseError) as err:
            await ollama.AsyncClient(host=proxy.url).generate(model=NEW, prompt="x")
        assert err.value.status_code == 404
    assert ollama_sim.requests["/api/pull"] == 0


async def test_a_model_the_registry_lacks_is_a_404_and_not_retried_at_once(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    sim = await ollama_sim_factory(registry=[])
    async with proxy_over(sim, pull_on_demand=True) as proxy:
        client = ollama.AsyncClient(host=proxy.url)
        for _ in range(3):
            with pytest.raises(ollama.ResponseError) as err:
                await client.chat(model="nope:1b", messages=[{"role": "user", "content": "x"}])
            assert err.value.status_code == 404 and "placing it on demand failed" in str(err.value)
    assert sim.requests["/api/pull"] == 1


async def test_on_demand_load_picks_a_level_that_fits_and_says_so(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    registry = [ModelSpec(f"llama3:8b-{lv}") for lv in ("q8_0", "q4_K_M", "q2_K")]
    sim = await ollama_sim_factory(models=[], registry=registry)
    async with proxy_over(sim, pull_on_demand=True) as proxy, aiohttp.ClientSession() as http:
        proxy.context.cluster.hosts[sim.url].ram_free = 6 << 30
        async with http.post(
            proxy.url + "/api/generate", json={"model": "llama3:8b-q8_0", "prompt": "hi", "stream": False}
        ) as r:
            body = await r.json()
            assert r.status == 200, body
            # q8_0 was asked and is in the registry: asked explicitly, so it is loaded as asked.
            assert body["model"] == "llama3:8b-q8_0"
        async with http.post(
            proxy.url + "/api/generate", json={"model": "llama3:8b-q5_0", "prompt": "hi", "stream": False}
        ) as r:
            body = await r.json()
            # q5_0 is not in the registry; the q8_0 now on the host is a compatible one: served by fallback.
            assert r.status == 200 and body["model"] == "llama3:8b-q8_0"
            assert r.headers["X-OLOL-Model"] == "llama3:8b-q8_0" and "fallback" in r.headers["X-OLOL-Route"]


async def test_on_demand_substitute_is_visible_in_the_reply(ollama_sim_factory, caplog) -> None:  # type: ignore[no-untyped-def]
    sim = await ollama_sim_factory(models=[], registry=[ModelSpec("llama3:8b-q4_K_M"), ModelSpec("llama3:8b-q2_K")])
    async with proxy_over(sim, pull_on_demand=True) as proxy, aiohttp.ClientSession() as http:
        proxy.context.cluster.hosts[sim.url].ram_free = 6 << 30
        with caplog.at_level("INFO", logger="olol.placement"):
            async with http.post(
                proxy.url + "/api/chat",
                json={"model": "llama3:8b-q6_K", "messages": [{"role": "user", "content": "hi"}], "stream": False},
            ) as r:
                body = await r.json()
        # q6_K is nowhere (registry included): the best level that fits 6 GiB is loaded and answers instead.
        assert r.status == 200, body
        assert body["model"] == "llama3:8b-q4_K_M" and r.headers["X-OLOL-Model"] == "llama3:8b-q4_K_M"
    assert any("in place of llama3:8b-q6_K" in rec.getMessage() for rec in caplog.records)
