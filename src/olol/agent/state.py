"""What this host is doing right now, for the state feed the proxy routes by."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager, suppress

import psutil

from olol.cluster.backend import Backend
from olol.errors import OlolError
from olol.proto import pb
from olol.wire.values import rfc3339_to_ns


class HostStateTracker:
    """Counts in-flight work and wakes state watchers whenever it changes."""

    def __init__(self, backend: Backend, parallel: int, *, memory_cap: int | None = None) -> None:
        self.backend = backend
        self.parallel = parallel
        self.memory_cap = memory_cap  # --max-memory: reported totals never exceed it
        self.in_flight = 0
        self.requests_total = 0
        self.errors_total = 0
        self._version = 0
        self._changed: asyncio.Event | None = None

    def _bump(self) -> None:
        self._version += 1
        if self._changed is not None:
            self._changed.set()

    @contextmanager
    def request(self) -> Iterator[None]:
        self.in_flight += 1
        self.requests_total += 1
        self._bump()
        try:
            yield
        except OlolError:
            self.errors_total += 1
            raise
        finally:
            self.in_flight -= 1
            self._bump()

    async def snapshot(self) -> pb.HostState:
        healthy = await self.backend.healthy()
        # A backend loading a model does not answer yet; saying so keeps a long cold load from being
        # taken for a frozen host (which the proxy would mark down, aborting the requests waiting on it).
        loading = bool(getattr(self.backend, "loading", False)) and not healthy
        loaded: list[pb.LoadedModel] = []
        available: list[str] = []
        held = 0
        if healthy:
            try:
                for m in await self.backend.running():
                    loaded.append(
                        pb.LoadedModel(
                            name=str(m.get("name", "")),
                            size=int(m.get("size") or 0),
                            size_vram=int(m.get("size_vram") or 0),
                            expires_at=rfc3339_to_ns(m.get("expires_at")),
                            context_length=int(m.get("context_length") or 0),
                        )
                    )
                    held += int(m.get("size") or 0)
                available = [str(m.get("name", "")) for m in await self.backend.list_models()]
            except OlolError:
                healthy = False
        mem = psutil.virtual_memory()
        ram_total, ram_free = int(mem.total), int(mem.available)
        if self.memory_cap is not None:
            ram_total = min(ram_total, self.memory_cap)
            ram_free = min(ram_free, max(0, self.memory_cap - held))
        return pb.HostState(
            timestamp=time.time_ns(),
            backend_healthy=healthy,
            loaded=loaded,
            in_flight=self.in_flight,
            parallel_capacity=self.parallel,
            ram_total=ram_total,
            ram_free=ram_free,
            available_models=available,
            requests_total=self.requests_total,
            errors_total=self.errors_total,
            loading=loading,
        )

    async def free_under_cap(self, available: int) -> int:
        """What may still be loaded under the cap: the cap less what loaded models hold, at most `available`."""
        if self.memory_cap is None:
            return available
        try:
            held = sum(int(m.get("size") or 0) for m in await self.backend.running())
        except OlolError:
            held = 0
        return min(available, max(0, self.memory_cap - held))

    async def watch(self, interval: float) -> AsyncIterator[pb.HostState]:
        """A snapshot now, then one per change of load (coalesced), and at least every interval."""
        if self._changed is None:
            self._changed = asyncio.Event()
        changed = self._changed
        while True:
            seen = self._version
            yield await self.snapshot()
            if self._version != seen:
                continue
            changed.clear()
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation.
            with suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await changed.wait()
