"""`--min-replicas`: keep each model on at least N healthy hosts, re-placing it when hosts die.

A host that drops out may be back in seconds (a restart, a blip), so a model
is re-placed only after it has been short of replicas for `grace` seconds.
Re-placement prefers LAN copies from the hosts that still hold the model
(`Replication` does that by itself), so it works without internet access.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

from olol.cluster import Cluster, Host, normalize
from olol.cluster.backend import JSON
from olol.lifecycle import cancel_and_wait
from olol.placement.jobs import JobBook
from olol.placement.targets import held_name

__all__ = ["Placer", "ReplicaKeeper"]

log = logging.getLogger(__name__)

_RETRY_AFTER = 60.0  # seconds before a failed re-placement is tried again


class Placer(Protocol):
    """What the keeper asks of `PlacementService`, which owns the keeper (hence a protocol, not an import)."""

    jobs: JobBook

    def place(self, model: str, *, replicas: int | None = ..., reason: str = ...,
              update_holders: bool = ...) -> AsyncIterator[JSON]: ...


class ReplicaKeeper:
    def __init__(
        self, service: Placer, cluster: Cluster, *, default_min: int | None, grace: float, interval: float
    ) -> None:
        self.service = service
        self.cluster = cluster
        self.default_min = default_min
        self.grace = grace
        self.interval = interval
        self.policies: dict[str, int] = {}  # model -> minimum, from `/api/pull` with `min_replicas`
        self.short_since: dict[str, float] = {}
        self._retry_at: dict[str, float] = {}  # after a failed re-placement: not before this time
        self.replaced = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        cluster.on_down(self._host_down)

    def _host_down(self, host: Host) -> None:
        self._wake.set()

    def set_policy(self, model: str, minimum: int) -> None:
        self.policies[normalize(model)] = max(1, minimum)
        self._wake.set()

    def wanted(self) -> dict[str, int]:
        """Model -> minimum healthy replicas: explicit policies, and the default for every model seen anywhere."""
        out: dict[str, int] = {}
        if self.default_min:
            for host in self.cluster.hosts.values():
                for name in host.models:
                    out[name] = self.default_min
        out.update(self.policies)
        return out

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="replica keeper")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:  # the keeper must outlive any one failed placement
                log.exception("replica check failed")

    async def check(self) -> list[str]:
        """Re-place every model short of replicas for longer than the grace period; returns those placed."""
        now = time.monotonic()
        placed = []
        for model, minimum in self.wanted().items():
            # A host holding a compatible variant (smart quantization placed one) counts as a replica.
            have = sum(1 for h in self.cluster.healthy_hosts() if held_name(h, model) is not None)
            if have >= minimum or self.service.jobs.busy(model):
                self.short_since.pop(model, None)
                continue
            if now < self._retry_at.get(model, 0.0):
                continue
            since = self.short_since.setdefault(model, now)
            if now - since < self.grace:
                # Look again when the grace period is over, not only at the next interval.
                asyncio.get_running_loop().call_later(self.grace - (now - since) + 0.01, self._wake.set)
                continue
            log.warning("%s is on %d healthy host(s), fewer than %d: placing more", model, have, minimum)
            if await self._replace(model, minimum):
                placed.append(model)
                self._retry_at.pop(model, None)
            else:  # e.g. no host with room: try again later, not on every wake-up
                self._retry_at[model] = time.monotonic() + max(self.grace, _RETRY_AFTER)
                asyncio.get_running_loop().call_later(max(self.grace, _RETRY_AFTER), self._wake.set)
            self.short_since.pop(model, None)
        return placed

    async def _replace(self, model: str, minimum: int) -> bool:
        final: dict[str, Any] = {}
        async for line in self.service.place(model, replicas=minimum, reason="min-replicas", update_holders=False):
            final = line
        if "error" in final:
            log.warning("re-placing %s failed: %s", model, final["error"])
            return False
        hosts = (final.get("olol") or {}).get("hosts") or []
        if len(hosts) < minimum:  # not enough healthy hosts to hold it: wait for more, do not loop
            log.warning(
                "%s is on %d host(s) of the %d wanted: no other host can take it now", model, len(hosts), minimum
            )
            return False
        self.replaced += 1
        log.info("re-placed %s: %s", model, (final.get("olol") or {}).get("via"))
        return True

    def to_json(self) -> dict[str, Any]:
        return {
            "default": self.default_min,
            "models": dict(self.policies),
            "grace_s": self.grace,
            "replaced": self.replaced,
            "short": sorted(self.short_since),
        }
