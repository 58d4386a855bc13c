"""Ollama's model lifecycle on a host that runs one engine process per loaded model.

What Ollama's scheduler does, for engines we supervise ourselves (llama.cpp):

* a model is loaded on the first request that names it, and the time that took is the
  request's `load_duration`;
* several models stay loaded at once while their memory fits under the host's cap;
* a model idle for its `keep_alive` is unloaded: the value of the last request that used it,
  else the host's default; negative keeps it forever, 0 unloads it as soon as it is idle;
* a model that does not fit evicts the least recently used idle models first; if evicting
  every idle one still leaves no room, the request fails with Ollama's own error.

The pool knows nothing of llama.cpp: a `Runner` is anything that starts and stops, and
`need` says how much memory one will take before it is started (a unit test drives the
pool with fakes; `olol.backends.llamacpp.host` with llama-servers).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from olol.errors import OlolError
from olol.wire.values import FOREVER

__all__ = ["Lease", "Loaded", "ModelPool", "Runner", "human_bytes"]


class Runner(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...


R = TypeVar("R", bound=Runner)


def human_bytes(n: int) -> str:
    """Ollama's `format.HumanBytes2` (binary units, one decimal), as its memory errors print sizes."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


@dataclass(eq=False)
class Loaded(Generic[R]):
    name: str
    path: Path
    runner: R
    need: int  # bytes reserved for it under the cap
    keep_alive_ns: int  # the last request's keep_alive (FOREVER: never expires)
    users: int = 0
    last_used: float = field(default_factory=time.monotonic)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    failed: BaseException | None = None
    _timer: asyncio.TimerHandle | None = None

    @property
    def expires_at(self) -> float | None:
        """Monotonic time it will be unloaded if nobody uses it before; None: never."""
        if self.keep_alive_ns == FOREVER:
            return None
        base = time.monotonic() if self.users else self.last_used
        return base + self.keep_alive_ns / 1e9


@dataclass(frozen=True)
class Lease(Generic[R]):
    loaded: Loaded[R]
    load_ns: int  # time this request spent waiting for the model to load (0 if it was loaded)

    @property
    def runner(self) -> R:
        return self.loaded.runner


class ModelPool(Generic[R]):
    """The loaded models of one host, each a `Runner`, within `cap` bytes (None: no cap)."""

    def __init__(
        self,
        factory: Callable[[str, Path], R],
        need: Callable[[str, Path], Awaitable[int]],
        *,
        cap: Callable[[], int] | None = None,
        keep_alive_ns: int = 5 * 60 * 10**9,
    ) -> None:
        self._factory = factory
        self._need = need
        self._cap = cap
        self.default_keep_alive_ns = keep_alive_ns
        self._models: dict[str, Loaded[R]] = {}
        self._lock = asyncio.Lock()  # one placement decision at a time
        self._closed = False

    # ------------------------------------------------------------------ views
    def loaded(self) -> list[Loaded[R]]:
        """Ready models, most recently used first (Ollama's /api/ps order)."""
        ready = [m for m in self._models.values() if m.ready.is_set() and m.failed is None]
        return sorted(ready, key=lambda m: -m.last_used)

    def get(self, name: str) -> Loaded[R] | None:
        return self._models.get(name)

    @property
    def used(self) -> int:
        return sum(m.need for m in self._models.values())

    # ------------------------------------------------------------------ use
    @contextlib.asynccontextmanager
    async def use(self, name: str, path: Path, keep_alive_ns: int | None = None) -> AsyncIterator[Lease[R]]:
        """Hold `name` loaded for one request; `keep_alive_ns` None: the host's default."""
        keep = self.default_keep_alive_ns if keep_alive_ns is None else keep_alive_ns
        t0 = time.perf_counter_ns()
        loaded, waited = await self._acquire(name, path, keep)
        try:
            if not loaded.ready.is_set():
                waited = True
                await loaded.ready.wait()
            if loaded.failed is not None:
                raise loaded.failed
            yield Lease(loaded, time.perf_counter_ns() - t0 if waited else 0)
        finally:
            await self._release(loaded)

    async def _acquire(self, name: str, path: Path, keep: int) -> tuple[Loaded[R], bool]:
        """The model with one more user, started if it was not loaded; True if this call loaded it."""
        async with self._lock:
            if self._closed:
                raise OlolError("host is shutting down", status=503)
            current = self._models.get(name)
            if current is not None and current.failed is None:
                current.users += 1
                current.keep_alive_ns = keep
                _cancel(current)
                return current, False
            need = await self._need(name, path)
            await self._make_room(need)
            loaded = Loaded(name, path, self._factory(name, path), need, keep, users=1)
            self._models[name] = loaded
        try:
            await loaded.runner.start()
        except BaseException as exc:
            loaded.failed = exc
            loaded.ready.set()
            async with self._lock:
                if self._models.get(name) is loaded:
                    del self._models[name]
            with contextlib.suppress(Exception):
                await loaded.runner.close()
            raise
        loaded.ready.set()
        return loaded, True

    async def _make_room(self, need: int) -> None:
        """Evict idle models, least recently used first, until `need` fits; Ollama's error if it cannot."""
        if self._cap is None:
            return
        cap = self._cap()
        idle = sorted((m for m in self._models.values() if m.users == 0), key=lambda m: m.last_used)
        freeable = sum(m.need for m in idle)
        if self.used - freeable + need > cap:
            available = max(0, cap - (self.used - freeable))
            raise OlolError(
                f"model requires more system memory ({human_bytes(need)}) than is available ({human_bytes(available)})",
                status=500,
            )
        for victim in idle:
            if self.used + need <= cap:
                break
            await self._unload(victim)

    async def _release(self, loaded: Loaded[R]) -> None:
        loaded.users -= 1
        loaded.last_used = time.monotonic()
        if loaded.users > 0 or loaded.failed is not None or self._models.get(loaded.name) is not loaded:
            return
        if loaded.keep_alive_ns == 0:
            async with self._lock:
                if loaded.users == 0 and self._models.get(loaded.name) is loaded:
                    await self._unload(loaded)
            return
        self._schedule(loaded)

    def _schedule(self, loaded: Loaded[R]) -> None:
        _cancel(loaded)
        if loaded.keep_alive_ns == FOREVER:
            return
        loop = asyncio.get_running_loop()
        loaded._timer = loop.call_later(
            loaded.keep_alive_ns / 1e9, lambda: loop.create_task(self._expire(loaded), name=f"expire-{loaded.name}")
        )

    async def _expire(self, loaded: Loaded[R]) -> None:
        async with self._lock:
            if loaded.users == 0 and self._models.get(loaded.name) is loaded:
                await self._unload(loaded)

    async def _unload(self, loaded: Loaded[R]) -> None:
        """Stop one model (the caller holds the lock and made sure nobody uses it)."""
        _cancel(loaded)
        self._models.pop(loaded.name, None)
        await loaded.runner.close()

    async def unload(self, name: str) -> bool:
        """Unload `name` now if it is idle (Ollama's `keep_alive: 0` with no prompt); False if busy or absent."""
        async with self._lock:
            loaded = self._models.get(name)
            if loaded is None or loaded.users > 0:
                return False
            await self._unload(loaded)
            return True

    async def close(self) -> None:
        async with self._lock:
            self._closed = True
            models, self._models = list(self._models.values()), {}
        for loaded in models:
            _cancel(loaded)
            with contextlib.suppress(Exception):
                await loaded.runner.close()

    async def reopen(self) -> None:
        self._closed = False


def _cancel(loaded: Loaded[R]) -> None:
    if loaded._timer is not None:
        loaded._timer.cancel()
        loaded._timer = None
