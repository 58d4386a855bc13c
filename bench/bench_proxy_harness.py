"""Shared by the proxy benchmarks (not a benchmark itself: it has no `__main__`).

Every component runs in a process of its own, as deployed: simulated Ollama
hosts (`python -m tests.support.ollama_sim`), `olol proxy` through its CLI, and
nginx where it is the baseline. The benchmark process only generates load, so
the proxy never shares an event loop with its clients. Everything listens on
loopback and everything started is stopped, even when a benchmark fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import platform
import shutil
import socket
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import aiohttp

from bench._report import PLOTS, ROOT

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Cluster", "Service", "figure", "free_port", "machine", "percentile", "save_plot", "wait_for_model"]

READY_TIMEOUT = 60.0


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between order statistics."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def figure(width: float = 7.0, height: float = 4.0) -> Figure:
    """A matplotlib figure drawn off-screen (matplotlib is imported only by benchmarks that plot)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def save_plot(fig: Figure, name: str) -> str:
    """Write `bench/plots/<name>.png`; returns the path to link from BENCHMARKS.md."""
    PLOTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOTS / f"{name}.png")
    return f"bench/plots/{name}.png"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def machine() -> str:
    """One line naming the machine and how busy it was, for a section's header."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    with contextlib.suppress(OSError, ValueError, IndexError):
        # Linux PSI: the share of the last minute in which some runnable task waited for a CPU.
        pressure = Path("/proc/pressure/cpu").read_text().split()[2].split("=")[1]
        load += f", CPU pressure {float(pressure):.0f}%"
    niceness = os.nice(0)
    if niceness:
        load += f" (benchmark run at nice {niceness:+d}: the box is shared)"
    return (
        f"{platform.machine()}, {_cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"load average at start {load}"
    )


@dataclass
class Service:
    """A process that printed `READY <address>`; `url` is where to reach it."""

    name: str
    proc: asyncio.subprocess.Process
    url: str

    async def stop(self, timeout: float = 15.0) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()


class Cluster:
    """Starts services and stops all of them, in reverse order, on exit."""

    def __init__(self) -> None:
        self.services: list[Service] = []
        self.logs = Path(tempfile.mkdtemp(prefix="olol-bench-"))

    async def __aenter__(self) -> Cluster:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop_all()
        if exc_type is None:
            shutil.rmtree(self.logs, ignore_errors=True)
        else:
            print(f"logs of the failed run: {self.logs}", file=sys.stderr)

    async def stop_all(self) -> None:
        while self.services:
            await self.services.pop().stop()

    def adopt(self, service: Service) -> Service:
        """Stop `service` with the rest (for processes started elsewhere, e.g. nginx)."""
        self.services.append(service)
        return service

    async def stop(self, service: Service) -> None:
        self.services.remove(service)
        await service.stop()

    async def spawn(self, name: str, argv: Sequence[str], *, url_prefix: str = "") -> Service:
        """Run `argv` (stderr to a log file) and wait for its READY line."""
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        with (self.logs / f"{name}.log").open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                *argv, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=log
            )
        service = Service(name, proc, "")
        self.services.append(service)  # registered first, so a failed start is still stopped
        assert proc.stdout is not None
        try:
            line = (await asyncio.wait_for(proc.stdout.readline(), READY_TIMEOUT)).decode().strip()
        except TimeoutError:
            line = ""
        if not line.startswith("READY "):
            raise RuntimeError(f"{name} did not start (exit {proc.returncode}), see {self.logs / name}.log")
        service.url = url_prefix + line.split(" ", 1)[1]
        return service

    async def sim(self, name: str, models: str = "llama3.2", **knobs: object) -> Service:
        """A simulated Ollama host; knobs are its CLI flags with underscores (`token_rate=50`)."""
        argv = [sys.executable, "-m", "tests.support.ollama_sim", "--models", models]
        for key, value in knobs.items():
            argv += [f"--{key.replace('_', '-')}", str(value)]
        return await self.spawn(name, argv)

    async def proxy(
        self,
        servers: Sequence[str],
        *flags: str,
        name: str = "proxy",
        model: str = "llama3.2",
        hosts: int | None = None,
    ) -> Service:
        """`olol proxy` on a free loopback port over `servers`; `flags` are extra CLI flags.

        Returns once `hosts` of the servers (default: all) list `model`, so no request races the first probe.
        """
        argv = [
            sys.executable,
            "-m",
            "olol",
            "proxy",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--servers",
            ",".join(servers),
            "--log-level",
            "warning",
            *flags,
        ]
        service = await self.spawn(name, argv, url_prefix="http://")
        await wait_for_model(service.url, model, len(servers) if hosts is None else hosts)
        return service


async def wait_for_model(url: str, model: str, hosts: int, timeout: float = 30.0) -> None:
    """Poll the proxy's merged `/api/tags` until `model` is on `hosts` hosts."""
    wanted = model if ":" in model else model + ":latest"
    async with aiohttp.ClientSession() as http:
        async with asyncio.timeout(timeout):
            while True:
                async with http.get(url + "/api/tags") as resp:
                    models = (await resp.json()).get("models") or []
                if any(m["name"] == wanted and len(m["olol"]["hosts"]) >= hosts for m in models):
                    return
                await asyncio.sleep(0.05)
