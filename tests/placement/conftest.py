"""Clusters of disk-backed Ollama hosts behind real agents, and a registry stand-in, for placement tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from olol.backends.ollama.backend import OllamaBackend
from tests.placement.disk_sim import DiskOllamaSim
from tests.placement.models_dir import gguf_bytes, write_ollama_model
from tests.placement.registry import RegistryStandIn
from tests.support.agent_fixtures import RunningAgent, start_agent


@dataclass
class Node:
    """One host: a disk-backed Ollama and the agent in front of it."""

    sim: DiskOllamaSim
    agent: RunningAgent
    models_dir: Path

    @property
    def target(self) -> str:
        return self.agent.target

    async def stop_agent(self, *, kill: bool = False) -> None:
        """Stop the agent; `kill` cuts in-flight calls at once instead of letting them drain."""
        if kill:
            self.agent.handle.grace = 0
        await self.agent.client.close()
        await self.agent.stop()


NodeFactory = Callable[..., Awaitable[list[Node]]]


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[NodeFactory]:
    """`await nodes(n, registry=..., transfer_rate=..., transport=...)`: n hosts, each an agent over a DiskOllamaSim."""
    started: list[Node] = []

    async def make(
        n: int, *, registry: RegistryStandIn | None = None, transport: str = "asyncio", **agent_config: Any
    ) -> list[Node]:
        out = []
        for _ in range(n):
            i = len(started)
            models = tmp_path / f"host{i}" / "models"
            sim = DiskOllamaSim(models, registry_url=registry.url if registry else None)
            await sim.start()
            agent = await start_agent(
                transport,
                OllamaBackend(sim.url),
                ollama_models=str(models),
                transfer_dir=str(tmp_path / f"host{i}" / "staging"),
                # Agents download from the same registry as their Ollama; without one, from a port nothing
                # listens on (refused at once, as the sim's offline pull fails at once).
                registry=registry.url if registry else "http://127.0.0.1:9",
                **agent_config,
            )
            node = Node(sim, agent, models)
            started.append(node)
            out.append(node)
        return out

    yield make
    for node in reversed(started):
        try:
            await node.stop_agent()
        finally:
            await node.sim.stop()


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[RegistryStandIn]:
    """A registry stand-in serving `tiny-chat:latest` (4 MiB of weights) and nothing else."""
    root = tmp_path / "registry"
    write_ollama_model(root, "tiny-chat:latest", gguf_bytes(4 * 1024 * 1024, seed=1))
    reg = RegistryStandIn(root)
    await reg.start()
    try:
        yield reg
    finally:
        await reg.stop()
