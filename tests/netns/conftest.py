"""Fixtures for multi-host tests: a LAN of network namespaces, agents started inside it, always torn down."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import pytest

from tests.netns.lan import Lan, NetHost, netns_unavailable

TOKEN = "netns-cluster-token-0123456789abcdef"
AGENT_PORT = 50051

_why = netns_unavailable()


@pytest.fixture
async def lan() -> AsyncIterator[Lan]:
    if _why:
        pytest.skip(_why)
    network = Lan().start()
    try:
        yield network
    finally:
        await network.stop_processes()
        network.close()


async def start_agent_in(
    lan: Lan,
    host: NetHost,
    *extra: str,
    token: str | None = TOKEN,
    models: str = "llama3.2,nomic-embed-text",
    token_rate: float | None = None,
) -> str:
    """A simulated Ollama and an agent (`olol server`) inside the host's namespace; returns its host:port."""
    sim_args = ["--models", models, "--parallel", "4"]
    if token_rate:
        sim_args += ["--token-rate", str(token_rate)]
    sim_url = await lan.spawn(host, sys.executable, "-m", "tests.support.ollama_sim", *sim_args)
    argv = [
        sys.executable,
        "-m",
        "olol",
        "server",
        "--host",
        "0.0.0.0",
        "--port",
        str(AGENT_PORT),
        "--ollama-host",
        sim_url,
        "--parallel",
        "4",
        "--async",
        "--interface",
        "eth0",
        *extra,
    ]
    if token:
        argv += ["--token", token]
    await lan.spawn(host, *argv)
    return f"{host.address}:{AGENT_PORT}"


async def wait_for(check, timeout: float = 15.0, interval: float = 0.05) -> float:  # type: ignore[no-untyped-def]
    """Seconds until check() held; fails the test at the timeout."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not check():
        if loop.time() - start > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
    return loop.time() - start
