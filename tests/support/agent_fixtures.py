"""Agents (threaded and asyncio) started in-process on free loopback ports, always stopped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from olol.agent.config import AgentConfig
from olol.agent.server import AioAgent, ThreadedAgent
from olol.backends.agent import AgentBackend
from olol.cluster.backend import Backend

TRANSPORTS = ["threaded", "asyncio"]


@dataclass
class RunningAgent:
    transport: str
    handle: ThreadedAgent | AioAgent
    client: AgentBackend

    @property
    def target(self) -> str:
        return self.handle.target

    async def stop(self) -> None:
        if isinstance(self.handle, ThreadedAgent):
            await asyncio.get_running_loop().run_in_executor(None, self.handle.stop)
        else:
            await self.handle.stop()


AgentFactory = Callable[..., Awaitable[RunningAgent]]


async def start_agent(transport: str, backend: Backend, **config: object) -> RunningAgent:
    cfg = AgentConfig(
        host="127.0.0.1",
        port=0,
        grace=config.pop("grace", 5.0),  # type: ignore[arg-type]
        state_interval=config.pop("state_interval", 0.2),
        **config,
    )  # type: ignore[arg-type]
    if transport == "threaded":
        loop = asyncio.get_running_loop()
        handle: ThreadedAgent | AioAgent = await loop.run_in_executor(None, ThreadedAgent.start, cfg, backend)
    else:
        handle = await AioAgent.start(cfg, backend)
    return RunningAgent(transport, handle, AgentBackend(handle.target))


@pytest.fixture(params=TRANSPORTS)
async def agent_factory(request: pytest.FixtureRequest) -> AsyncIterator[AgentFactory]:
    """`await agent_factory(backend, **AgentConfig fields)`: an agent of this test's transport."""
    started: list[RunningAgent] = []

    async def make(backend: Backend, **config: object) -> RunningAgent:
        agent = await start_agent(request.param, backend, **config)
        started.append(agent)
        return agent

    yield make
    for agent in started:
        await agent.client.close()
        await agent.stop()
