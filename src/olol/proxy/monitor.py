"""Keeps each host's entry in the cluster current: health, models, what is loaded, load.

An agent pushes state snapshots (`watch_state()`); a plain Ollama host is polled
(health, `/api/tags`, `/api/ps`) every `interval`. Either way a host that stops
answering for about three intervals is marked down, and it rejoins on its own
the next time it answers. A feed that goes quiet is checked with a probe, so a
host that vanished without closing its connection is caught too.

Timeouts use `asyncio.timeout`, not `asyncio.wait_for`: on Python 3.11 the latter
can swallow a cancellation that races a completion, which left a monitor running
after `stop()` cancelled it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from olol.cluster import Cluster, Host
from olol.cluster.backend import JSON
from olol.errors import OlolError
from olol.lifecycle import cancel_and_wait, close_stream

__all__ = ["HostMonitor"]

log = logging.getLogger(__name__)

# Failures a probe may see: typed backend errors, timeouts, and whatever a transport leaks.
_PROBE_ERRORS = (OlolError, TimeoutError, OSError, ValueError)
# The least a probe is given to answer, whatever the interval: a short interval is for noticing a
# refused or dropped connection fast, and must not turn a host that is merely busy for a moment
# (a loaded CPU, a GC pause) into a dead one. A dead host is still out within interval + this.
MIN_PROBE_TIMEOUT = 1.0


def _int(value: Any) -> int | None:
    """Protobuf's JSON mapping sends int64 fields as strings."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _names(entries: Any) -> list[JSON]:
    """Agent snapshots may list models as names or as /api/tags-like objects."""
    out: list[JSON] = []
    for entry in entries or []:
        if isinstance(entry, str):
            out.append({"name": entry, "model": entry})
        elif isinstance(entry, dict):
            out.append(entry)
    return out


def _accepts(func: Callable[..., Any], name: str) -> bool:
    try:
        return name in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


class HostMonitor:
    def __init__(self, host: Host, cluster: Cluster, *, interval: float = 1.0) -> None:
        self.host = host
        self.cluster = cluster
        self.interval = interval
        self.timeout = max(interval, MIN_PROBE_TIMEOUT)
        self._task: asyncio.Task[None] | None = None
        self._first = asyncio.Event()  # set once the first probe settled, healthy or not
        self._info_known = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"monitor {self.host.id}")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def first_probe(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._first.wait()

    async def refresh(self) -> None:
        """Re-read models now (after a pull, create, copy or delete through the proxy)."""
        try:
            await self._poll()
        except _PROBE_ERRORS as exc:
            self._down(exc)

    # ------------------------------------------------------------------ loops
    async def _run(self) -> None:
        watch: Callable[..., AsyncIterator[JSON]] | None = getattr(self.host.backend, "watch_state", None)
        # Ask the feed for at least one snapshot per probe interval when it lets us choose.
        kwargs = {"interval": self.interval} if watch is not None and _accepts(watch, "interval") else {}
        while True:
            try:
                if watch is not None:
                    await self._follow(watch(**kwargs))
                else:
                    await self._poll()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a monitor must outlive any one failure of its host
                self._down(exc)
            self._first.set()
            await asyncio.sleep(self.interval)

    async def _follow(self, feed: AsyncIterator[JSON]) -> None:
        """Apply snapshots until the feed ends; when it goes quiet, a probe decides if the host is alive.

        The pending read is kept across a quiet spell rather than cancelled: cancelling it
        would end the feed itself.
        """
        pending: asyncio.Future[JSON] | None = None
        try:
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(anext(feed))
                done, _ = await asyncio.wait({pending}, timeout=self.interval * 2)
                if not done:
                    if not await self._probe():
                        raise OlolError("no state update and no answer to a health probe")
                    continue
                try:
                    snapshot = pending.result()
                except StopAsyncIteration:
                    raise OlolError("state feed ended") from None
                finally:
                    pending = None
                await self._apply_snapshot(snapshot)
                self._first.set()
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending
            with contextlib.suppress(Exception):
                await close_stream(feed)

    async def _probe(self) -> bool:
        try:
            async with asyncio.timeout(self.timeout):
                return await self.host.backend.healthy()
        except _PROBE_ERRORS:
            return False

    async def _poll(self) -> None:
        if not await self._probe():
            raise OlolError("health probe failed")
        await self._learn_info()
        async with asyncio.timeout(self.timeout * 2):
            models, running = await asyncio.gather(self.host.backend.list_models(), self.host.backend.running())
        before = set(self.host.models)
        self.host.set_models(models)
        self.host.set_running(running)
        self._up(models_changed=set(self.host.models) != before)

    # ------------------------------------------------------------------ state
    async def _learn_info(self) -> None:
        if self._info_known:
            return
        async with asyncio.timeout(self.timeout * 2):
            info = await self.host.backend.info()
        self.host.kind = info.kind
        self.host.version = info.version
        self.host.parallel = max(1, info.parallel)
        self.host.hardware = dict(info.extra)
        self._info_known = True

    async def _apply_snapshot(self, snap: JSON) -> None:
        if not snap.get("backend_healthy", True):
            if snap.get("loading"):
                # Not answering because it loads a model: alive, and the requests waiting on it keep waiting.
                self.host.loading = True
                self._up(models_changed=False)
                return
            self._down(OlolError(str(snap.get("error") or "backend reported unhealthy")))
            return
        self.host.loading = False
        await self._learn_info()
        before = set(self.host.models)
        if "available_models" in snap:
            self.host.set_models(_names(snap["available_models"]))
        if "loaded" in snap:
            self.host.set_running(_names(snap["loaded"]))
        was_saturated = self.host.saturated
        in_flight = _int(snap.get("in_flight"))
        if in_flight is not None:
            self.host.reported_in_flight = in_flight
        parallel = _int(snap.get("parallel_capacity"))
        if parallel:
            self.host.parallel = parallel
        ram_free = _int(snap.get("ram_free"))
        if ram_free is not None:
            self.host.ram_free = ram_free
        for key in ("ram_total", "vram_total", "vram_free"):
            if (value := _int(snap.get(key))) is not None:
                self.host.hardware[key] = value
        self._up(models_changed=set(self.host.models) != before)
        if was_saturated and not self.host.saturated:
            # Its other clients finished (or it grew slots): requests queued for it must hear so now,
            # not at their max-queue-wait.
            self.cluster.capacity_changed(self.host)

    def _up(self, *, models_changed: bool) -> None:
        self.host.last_seen = time.monotonic()
        if not self.host.healthy:
            log.info("host %s is up", self.host.id)
        self.cluster.mark_up(self.host)
        if models_changed:
            self.cluster.capacity_changed(self.host)

    def _down(self, exc: BaseException) -> None:
        if self.host.healthy:
            log.warning("host %s is down: %s", self.host.id, exc)
        self._info_known = False  # it may come back as a different build
        self.cluster.mark_down(self.host, str(exc) or type(exc).__name__)
