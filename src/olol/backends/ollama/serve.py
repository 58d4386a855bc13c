"""`olol server --ollama-serve`: the agent runs `ollama serve` itself, tuned by the host's settings.

Ollama reads its tuning only from its environment, at start; the agent hands it the
host's settings as Ollama's own variables (`HostSettings.ollama_environment`) and the
address it talks to as `OLLAMA_HOST`. A server that dies is started again (with a
backoff, so one that cannot start does not spin), and requests fail cleanly while it is
down, as they would against any unreachable Ollama.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections import deque
from urllib.parse import urlsplit

import aiohttp

from olol.backends.host_settings import HostSettings
from olol.backends.ollama.backend import OllamaBackend
from olol.errors import BackendUnavailable
from olol.lifecycle import cancel_and_wait, stop_process

__all__ = ["OllamaServe", "SupervisedOllamaBackend"]

log = logging.getLogger(__name__)


class OllamaServe:
    """One supervised `ollama serve` listening where `url` says."""

    def __init__(
        self,
        url: str,
        settings: HostSettings,
        *,
        binary: str | None = None,
        ready_timeout: float = 60.0,
        max_backoff: float = 10.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.settings = settings
        self.binary = binary
        self.ready_timeout = ready_timeout
        self.max_backoff = max_backoff
        self.restarts = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._log: deque[str] = deque(maxlen=50)
        self._closing = False
        self._reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    def environment(self) -> dict[str, str]:
        parts = urlsplit(self.url if "://" in self.url else "http://" + self.url)
        return self.settings.ollama_environment(parts.netloc or "127.0.0.1:11434")

    def _executable(self) -> str:
        found = shutil.which(self.binary or "ollama")
        if not found:
            raise BackendUnavailable(
                f"--ollama-serve: no {self.binary or 'ollama'!r} executable on PATH (install Ollama, or drop the flag)"
            )
        return found

    async def start(self) -> None:
        if self._supervisor is not None:
            return
        self._closing = False
        await self._spawn()
        self._supervisor = asyncio.create_task(self._supervise(), name="ollama-serve-supervisor")

    async def close(self) -> None:
        self._closing = True
        await cancel_and_wait(self._supervisor)
        self._supervisor = None
        await stop_process(self._proc, 10.0)

    async def _spawn(self) -> None:
        exe = self._executable()
        log.info("starting %s serve for %s", exe, self.url)
        self._proc = await asyncio.create_subprocess_exec(
            exe, "serve",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, **self.environment()},
            start_new_session=True,
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read(self._proc), name="ollama-serve-log")
        await self._wait_ready(self._proc)

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            self._log.append(line.decode(errors="replace").rstrip())

    async def _wait_ready(self, proc: asyncio.subprocess.Process) -> None:
        deadline = time.monotonic() + self.ready_timeout
        delay = 0.02
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0)) as session:
            while True:
                if proc.returncode is not None:
                    tail = "\n".join(self._log)
                    raise BackendUnavailable(f"ollama serve exited with code {proc.returncode} during startup\n{tail}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(self.url + "/api/version") as resp:
                        if resp.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise BackendUnavailable(f"ollama serve not ready at {self.url} after {self.ready_timeout:.0f}s")
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, 0.25)

    async def _supervise(self) -> None:
        failures = 0
        while not self._closing:
            assert self._proc is not None
            code = await self._proc.wait()
            if self._closing:
                return
            failures += 1
            log.warning("ollama serve exited with code %s; restarting", code)
            await asyncio.sleep(min(0.25 * 2 ** (failures - 1), self.max_backoff))
            try:
                await self._spawn()
            except BackendUnavailable as exc:
                log.warning("ollama serve restart failed: %s", exc.message)
                continue
            failures = 0
            self.restarts += 1


class SupervisedOllamaBackend(OllamaBackend):
    """The Ollama backend over an `ollama serve` this agent started (and restarts)."""

    def __init__(self, url: str, settings: HostSettings, *, parallel: int = 1, binary: str | None = None) -> None:
        super().__init__(url, parallel=parallel, settings=settings)
        self.serve = OllamaServe(self.url, settings, binary=binary)

    async def start(self) -> None:
        await self.serve.start()
        await super().start()

    async def close(self) -> None:
        await super().close()
        await self.serve.close()
