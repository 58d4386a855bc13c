"""`olol dist` as a process: print the plan, run one request, or serve until stopped.

Imports inside functions are start-up cost kept off the other commands (see `olol.cli`).
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from typing import Any

import aiohttp
from rich.console import Console

from olol import eventloop
from olol.lifecycle import ready_until_signal
from olol.split.coordinator import Coordinator, DistConfig
from olol.split.front import DistFront
from olol.split.report import plan_table

__all__ = ["DistRun", "run_dist", "start_agent"]

log = logging.getLogger(__name__)


@dataclass
class DistRun:
    plan_only: bool = False
    prompt: str | None = None
    n_predict: int = 128
    temperature: float | None = None
    host: str = "127.0.0.1"  # the HTTP front
    port: int = 0
    agent_port: int | None = None  # also serve the model as an OLOL agent (gRPC) on this port


def run_dist(config: DistConfig, run: DistRun) -> int:
    # uvloop where installed: every tunnelled ggml round trip crosses this loop twice.
    return eventloop.run(_main(config, run))


async def _main(config: DistConfig, run: DistRun) -> int:
    coordinator = Coordinator(config)
    if run.plan_only:
        try:
            plan = await coordinator.plan_only()
        finally:
            await coordinator.close()
        Console().print(plan_table(plan, config.margin))
        return 0
    await coordinator.start()
    try:
        if run.prompt is not None:
            return await _one_request(coordinator, run)
        return await _serve(coordinator, run)
    finally:
        await coordinator.close()


async def _one_request(coordinator: Coordinator, run: DistRun) -> int:
    body: dict[str, Any] = {"prompt": run.prompt, "n_predict": run.n_predict, "stream": True}
    if run.temperature is not None:
        body["temperature"] = run.temperature
    async with aiohttp.ClientSession() as session, session.post(coordinator.url + "/completion", json=body) as resp:
        if resp.status != 200:
            sys.stderr.write(f"error: llama-server answered {resp.status}: {await resp.text()}\n")
            return 1
        timings: dict[str, Any] = {}
        async for line in resp.content:
            if not line.startswith(b"data: "):
                continue
            event = json.loads(line[6:])
            sys.stdout.write(event.get("content", ""))
            sys.stdout.flush()
            timings = event.get("timings", timings)
    sys.stdout.write("\n")
    if timings:
        used = ", ".join(coordinator.plan.used_addresses) if coordinator.plan else ""
        predicted, speed = timings.get("predicted_n", 0), timings.get("predicted_per_second", 0.0)
        log.info("%d tokens at %.1f tokens/s over %s", predicted, speed, used)
    return 0


async def _serve(coordinator: Coordinator, run: DistRun) -> int:
    front = DistFront(coordinator, run.host, run.port)
    await front.start()
    agent = None
    try:
        if run.agent_port is not None:
            agent = await start_agent(coordinator, front.url, "0.0.0.0", run.agent_port)
        extra = f" agent=0.0.0.0:{agent.port}" if agent is not None else ""
        await ready_until_signal(f"{front.url}{extra}")
    finally:
        if agent is not None:
            await agent.stop()
        await front.close()
    return 0


async def start_agent(coordinator: Coordinator, front_url: str, host: str, port: int) -> Any:
    """An OLOL agent whose llama.cpp backend is the front: `olol proxy` reaches the split model like any host.

    It carries the cluster token, and serves TLS when this host has a certificate (`olol certs` issues
    host certificates valid as both server and client, the ones the coordinator dials workers with)."""
    from olol.agent.config import AgentConfig
    from olol.agent.server import AioAgent
    from olol.backends.llamacpp.backend import LlamaCppBackend
    from olol.security.settings import SecuritySettings
    from olol.security.tls import TlsFiles

    cfg = coordinator.config
    backend = LlamaCppBackend(url=front_url, model_path=cfg.model, model_name=cfg.alias)
    security = SecuritySettings(token=cfg.token, tls=cfg.tls if cfg.tls.has_identity else TlsFiles())
    agent_config = AgentConfig(host=host, port=port, backend="llamacpp", security=security)
    return await AioAgent.start(agent_config, backend)
