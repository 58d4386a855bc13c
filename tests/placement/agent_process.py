"""An agent in its own process: the way to kill one mid-copy for real (SIGKILL, nothing closed politely)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

__all__ = ["AgentProcess", "agent_process"]

REPO_ROOT = Path(__file__).resolve().parents[2]


class AgentProcess:
    def __init__(self, proc: asyncio.subprocess.Process, target: str) -> None:
        self.proc = proc
        self.target = target

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()

    async def wait(self, timeout: float = 10.0) -> int:
        return await asyncio.wait_for(self.proc.wait(), timeout)


@asynccontextmanager
async def agent_process(*args: str, timeout: float = 30.0) -> AsyncIterator[AgentProcess]:
    """`olol server --host 127.0.0.1 --port 0 ARGS...`, yielded once it printed READY; killed on exit."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH")])),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "olol",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--log-level",
        "warning",
        *args,
        cwd=REPO_ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout)).decode().strip()
        if not line.startswith("READY "):
            raise RuntimeError(f"agent process failed to start (exit {proc.returncode}): {line!r}")
        yield AgentProcess(proc, line.split(" ", 1)[1])
    finally:
        if proc.returncode is None:
            proc.kill()
        await asyncio.wait_for(proc.wait(), 10)
