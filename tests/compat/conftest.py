"""The compatibility matrix's clusters: every client test runs over each of three topologies.

* `http`: `olol proxy` over two plain HTTP Ollama hosts (the simulator);
* `agents`: the proxy over two `olol server` agents, each in front of a simulator;
* `llama`: the proxy over an agent in front of a REAL llama-server (tiny generated
  model; marked `slow`), beside an agent over a simulator that holds the models
  only Ollama can manage (pulls, copies). Inference always goes to llama.cpp there.

Everything is started in-process on free loopback ports and stopped at teardown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from olol.backends.llamacpp.backend import LlamaCppBackend
from olol.backends.ollama.backend import OllamaBackend
from olol.cluster.backend import Backend
from olol.proxy import ProxyConfig, start_proxy
from tests.support.agent_fixtures import RunningAgent, start_agent
from tests.support.sim_fixtures import SimFactory

__all__ = ["Topology"]

TOPOLOGIES = ["http", "agents", pytest.param("llama", marks=pytest.mark.slow)]


@dataclass(frozen=True)
class Topology:
    name: str
    url: str  # the proxy
    chat: str  # a model for generate and chat
    embed: str  # an embedding model
    dim: int  # its embedding length
    #: Whether `chat` answers "call get_weather" with a tool call (the simulator does; a tiny model cannot).
    calls_tools: bool
    manage: str = "llama3.2"  # a model on an Ollama host, for copy/create/push/delete
    pull: str = "qwen2.5:0.5b"  # a model the simulated registry serves


@pytest.fixture(params=TOPOLOGIES)
async def topology(request: pytest.FixtureRequest, ollama_sim_factory: SimFactory) -> AsyncIterator[Topology]:
    kind = request.param
    agents: list[RunningAgent] = []

    async def agent(backend: Backend) -> str:
        # Loopback only: an agent's own downloads go to a closed port, so it pulls through its Ollama.
        running = await start_agent("asyncio", backend, parallel=4, registry="http://127.0.0.1:9")
        agents.append(running)
        return running.target

    try:
        if kind == "http":
            servers = [s.url for s in await ollama_sim_factory.many(2)]
            chat, embed, dim, tools = "llama3.2", "nomic-embed-text", 768, True
        elif kind == "agents":
            servers = [await agent(OllamaBackend(s.url)) for s in await ollama_sim_factory.many(2)]
            chat, embed, dim, tools = "llama3.2", "nomic-embed-text", 768, True
        else:
            llama = request.getfixturevalue("llama_server")
            backend = LlamaCppBackend(url=llama.url, model_path=llama.model_path, model_name="tiny")
            sim = await ollama_sim_factory()
            servers = [await agent(backend), await agent(OllamaBackend(sim.url))]
            chat, embed, dim, tools = "tiny", "tiny", 128, False
        proxy = await start_proxy(ProxyConfig(host="127.0.0.1", port=0, servers=servers, probe_interval=0.2))
        try:
            assert all(h.healthy for h in proxy.context.cluster.hosts.values())  # start_proxy probed them once
            yield Topology(kind, proxy.url, chat, embed, dim, tools)
        finally:
            await proxy.stop()
    finally:
        for running in agents:
            await running.client.close()
            await running.stop()
