"""A mixed cluster: an OLOL agent (gRPC, state feed) beside a plain Ollama host."""

from __future__ import annotations

import asyncio

import aiohttp
import ollama
import pytest

from olol.backends.ollama.backend import OllamaBackend
from tests.proxy.helpers import proxy_over


@pytest.fixture
async def agent_over_sim(ollama_sim_factory):  # type: ignore[no-untyped-def]
    agent_fixtures = pytest.importorskip("tests.support.agent_fixtures")
    sim = await ollama_sim_factory(parallel=3)
    agent = await agent_fixtures.start_agent("asyncio", OllamaBackend(sim.url), parallel=3, state_interval=0.1)
    try:
        yield sim, agent
    finally:
        await agent.client.close()
        await agent.stop()


async def test_agent_and_plain_ollama_host_serve_together(agent_over_sim, ollama_sim) -> None:  # type: ignore[no-untyped-def]
    sim, agent = agent_over_sim
    async with proxy_over(agent.target, ollama_sim, balancer="round_robin", affinity=False) as proxy:
        host = proxy.context.cluster.hosts[agent.target]
        assert host.healthy and host.parallel == 3 and host.has_model("llama3.2")
        client = ollama.AsyncClient(host=proxy.url)
        replies = await asyncio.gather(*(client.generate(model="llama3.2", prompt=str(i)) for i in range(4)))
        assert all(r.done for r in replies)
        assert sim.requests["/api/generate"] == 2 and ollama_sim.requests["/api/generate"] == 2
        # The agent's state feed reports what is loaded there.
        for _ in range(50):
            if host.is_loaded("llama3.2"):
                break
            await asyncio.sleep(0.02)
        assert host.is_loaded("llama3.2")
        async with aiohttp.ClientSession() as http, http.get(proxy.url + "/api/tags") as r:
            where = {m["name"]: m["olol"]["hosts"] for m in (await r.json())["models"]}
        assert sorted(where["llama3.2:latest"]) == sorted([agent.target, ollama_sim.url])
