"""A small live cluster (a proxy over an agent and a plain Ollama simulator) on a loop thread.

Property tests (hypothesis, schemathesis) are synchronous; they talk to this
cluster over real HTTP while it runs in its own thread, as a deployment would.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from olol.backends.ollama.backend import OllamaBackend
from olol.proxy import ProxyConfig, RunningProxy, start_proxy
from olol.security.settings import SecuritySettings
from tests.support.agent_fixtures import RunningAgent, start_agent
from tests.support.ollama_sim import OllamaSim

T = TypeVar("T")


class LiveCluster:
    def __init__(self, security: SecuritySettings | None = None) -> None:
        self.security = security or SecuritySettings()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="live-cluster", daemon=True)
        self.sims: list[OllamaSim] = []
        self.agent: RunningAgent | None = None
        self.proxy: RunningProxy | None = None

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def url(self) -> str:
        assert self.proxy is not None
        return self.proxy.url

    def start(self) -> LiveCluster:
        self._thread.start()
        self.run(self._start())
        return self

    async def _start(self) -> None:
        self.sims = [OllamaSim(parallel=4), OllamaSim(parallel=4)]
        for sim in self.sims:
            await sim.start()
        self.agent = await start_agent("asyncio", OllamaBackend(self.sims[0].url), security=self.security)
        config = ProxyConfig(
            host="127.0.0.1",
            port=0,
            servers=[self.agent.target, self.sims[1].url],
            probe_interval=0.2,
            balancer="round_robin",
            max_queue_wait=5.0,
            security=self.security,
        )
        self.proxy = await start_proxy(config)

    def stop(self) -> None:
        self.run(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    async def _stop(self) -> None:
        if self.proxy is not None:
            await self.proxy.stop()
        if self.agent is not None:
            await self.agent.client.close()
            await self.agent.stop()
        for sim in self.sims:
            await sim.stop()
