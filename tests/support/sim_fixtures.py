"""Fixtures that start Ollama simulators (tests/support/ollama_sim/).

* `ollama_sim`: one in-process sim with `default_models()`:
  llama3.2:latest (Q4_0), llama3.2:1b-q8_0, nomic-embed-text:latest (embedding),
  qwen3:0.6b (thinking).
* `ollama_sim_factory`: `await factory(**knobs)` / `await factory.many(n, **knobs)`
  start sims with any `OllamaSim` knobs; all are stopped at teardown.
* `ollama_sim_process`: `await launch(**knobs)` runs the sim as a separate process
  (a host a test can SIGTERM or SIGKILL); every one is killed at teardown.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.ollama_sim import OllamaSim, default_models

__all__ = ["SimFactory", "SimProcess", "SimProcessFactory"]

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def ollama_sim() -> AsyncIterator[OllamaSim]:
    async with OllamaSim(default_models()) as sim:
        yield sim


class SimFactory:
    """Starts sims on free ports and remembers them so teardown can stop them all."""

    def __init__(self) -> None:
        self.sims: list[OllamaSim] = []

    async def __call__(self, **knobs: Any) -> OllamaSim:
        sim = OllamaSim(**knobs)
        await sim.start()
        self.sims.append(sim)
        return sim

    async def many(self, n: int, **knobs: Any) -> list[OllamaSim]:
        # Each sim builds its own copies of the models, so they share no state.
        return [await self(**knobs) for _ in range(n)]

    async def close(self) -> None:
        for sim in reversed(self.sims):
            await sim.stop()
        self.sims.clear()


@pytest.fixture
async def ollama_sim_factory() -> AsyncIterator[SimFactory]:
    factory = SimFactory()
    try:
        yield factory
    finally:
        await factory.close()


class SimProcess:
    """A sim in its own process: the way to make a host die for real."""

    def __init__(self, proc: asyncio.subprocess.Process, url: str) -> None:
        self.proc = proc
        self.url = url

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def terminate(self) -> None:
        """SIGTERM: the sim stops serving and exits 0."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: a crash, nothing is closed politely."""
        if self.proc.returncode is None:
            self.proc.kill()

    async def wait(self, timeout: float = 10.0) -> int:
        return await asyncio.wait_for(self.proc.wait(), timeout)


class SimProcessFactory:
    def __init__(self) -> None:
        self.processes: list[SimProcess] = []

    async def __call__(self, *, models: list[str] | None = None, timeout: float = 20.0, **knobs: Any) -> SimProcess:
        """Knobs are the CLI flags with underscores, e.g. `token_rate=50`, `registry="a,b"`."""
        argv = [sys.executable, "-m", "tests.support.ollama_sim"]
        if models is not None:
            argv += ["--models", ",".join(models)]
        for name, value in knobs.items():
            argv += [f"--{name.replace('_', '-')}", str(value)]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        }
        proc = await asyncio.create_subprocess_exec(*argv, cwd=REPO_ROOT, env=env, stdout=asyncio.subprocess.PIPE)
        process = SimProcess(proc, url="")
        self.processes.append(process)  # registered first, so a failed start is still killed
        assert proc.stdout is not None
        try:
            line = (await asyncio.wait_for(proc.stdout.readline(), timeout)).decode().strip()
        except TimeoutError:
            raise RuntimeError(f"ollama_sim process did not report READY within {timeout}s") from None
        if not line.startswith("READY "):
            raise RuntimeError(f"ollama_sim process failed to start (exit {proc.returncode}): {line!r}")
        process.url = line.split(" ", 1)[1]
        return process

    async def close(self) -> None:
        for process in self.processes:
            process.kill()
            await asyncio.wait_for(process.proc.wait(), 10)
        self.processes.clear()


@pytest.fixture
async def ollama_sim_process() -> AsyncIterator[SimProcessFactory]:
    factory = SimProcessFactory()
    try:
        yield factory
    finally:
        await factory.close()
