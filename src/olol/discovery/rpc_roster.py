"""The rpc-servers a proxy knows of: advertised over mDNS or registered with it (`olol rpc-server --proxy`).

They are workers for split models, never inference hosts: nothing here touches
the cluster, and nothing is routed to them. Coordinators (`--distributed`) and
`/api/status` read `targets()`. A registration is a lease like an agent's: it
lapses unless renewed, and a signed `leave` drops it at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from olol.discovery.advert import Advert

__all__ = ["RpcRoster"]

log = logging.getLogger("olol.discovery")


class RpcRoster:
    def __init__(self) -> None:
        self.adverts: dict[str, Advert] = {}  # key (an mDNS name, or "register:" + target) -> what it said
        self.origins: dict[str, str] = {}  # key -> "mdns" or "register"
        self._targets: dict[str, str] = {}  # key -> host:port to dial
        self._leases: dict[str, float] = {}  # registered key -> monotonic time its registration lapses
        self._misses: dict[str, int] = {}  # key -> liveness probes missed in a row

    @staticmethod
    def registered_key(target: str) -> str:
        return "register:" + target

    def targets(self) -> list[str]:
        """`host:port` of every rpc-server known now, sorted (a stable split order)."""
        return sorted(set(self._targets.values()))

    def seen(self, key: str, advert: Advert, target: str | None, origin: str, *, lease: float | None = None) -> bool:
        """Record an advert or a registration; True when its target was not known before."""
        new = target is not None and target not in self._targets.values()
        self.adverts[key], self.origins[key] = advert, origin
        if target is not None:
            self._targets[key] = target
        if lease is not None:
            self._leases[key] = time.monotonic() + lease
        if new:
            log.info("rpc-server %s joined (%s)", target, origin)
        return new

    def forget(self, key: str, reason: str) -> bool:
        """Drop one advert or registration; True when it was known."""
        if key not in self.adverts:
            return False
        target = self._targets.pop(key, None)
        del self.adverts[key], self.origins[key]
        self._leases.pop(key, None)
        self._misses.pop(key, None)
        if target is not None and target not in self._targets.values():
            log.info("rpc-server %s left: %s", target, reason)
        return True

    def expire(self, now: float | None = None) -> list[str]:
        """Drop registrations that lapsed (by `now`, monotonic); returns their keys."""
        now = time.monotonic() if now is None else now
        lapsed = [key for key, until in self._leases.items() if until < now]
        for key in lapsed:
            self.forget(key, "registration expired")
        return lapsed

    async def check(self, reachable: Callable[[str], Awaitable[bool]], misses: int = 2) -> list[str]:
        """Probe every known rpc-server; drop those that missed `misses` probes in a row. Returns their keys.

        An mDNS goodbye drops a worker that stops cleanly; one killed outright (or whose
        goodbye was lost) would otherwise stay a split target until its records expire, minutes later.
        """
        keys = [key for key in self._targets]
        results = await asyncio.gather(*(reachable(self._targets[key]) for key in keys))
        dropped = []
        for key, alive in zip(keys, results, strict=True):
            if key not in self._targets:  # forgotten while we probed
                continue
            if alive:
                self._misses.pop(key, None)
                continue
            self._misses[key] = self._misses.get(key, 0) + 1
            if self._misses[key] >= misses:
                self.forget(key, f"not answering ({misses} probes missed)")
                dropped.append(key)
        return dropped

    def clear(self) -> None:
        self._misses.clear()
        self.adverts.clear()
        self.origins.clear()
        self._targets.clear()
        self._leases.clear()
