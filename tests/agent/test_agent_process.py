"""`olol server` as a real process: READY line, serves, and SIGTERM drains in-flight streams."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import pytest

from olol.backends.agent import AgentBackend
from tests.support.sim_fixtures import SimFactory


@pytest.mark.parametrize("flavour", ["--threaded", "--async"])
async def test_sigterm_drains_in_flight_streams(ollama_sim_factory: SimFactory, flavour: str) -> None:
    sim = await ollama_sim_factory(token_rate=40)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "olol",
        "--mode",
        "server",
        flavour,
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--ollama-host",
        sim.url,
        "--grace",
        "10",
        "--log-level",
        "warning",
        stdout=asyncio.subprocess.PIPE,
    )
    client: AgentBackend | None = None
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert line.startswith("READY 127.0.0.1:"), line
        client = AgentBackend(line.split()[1])
        chunks: list[dict[str, Any]] = []

        async def consume() -> None:
            async for chunk in client.generate({"model": "llama3.2", "prompt": "x", "options": {"num_predict": 20}}):
                chunks.append(chunk)

        job = asyncio.ensure_future(consume())
        while not chunks:
            await asyncio.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(job, 20)  # the stream finishes although the agent is shutting down
        assert chunks[-1]["done"] and chunks[-1]["eval_count"] == 20
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if client is not None:
            await client.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
