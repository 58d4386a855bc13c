"""Hosts that join and leave a running proxy: found by mDNS, registered by agents, or found by a scan.

A joined host is built exactly like a `--servers` host: the proxy hands in its own
`add`/`remove` (one place builds a host: backend factory, token and TLS, monitor),
so from then on routing, health and failover treat it the same. Hosts given with
`--servers` are never removed here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from olol.cluster import Cluster

__all__ = ["AddHost", "Membership", "RemoveHost"]

log = logging.getLogger("olol.discovery")

#: Builds, starts and adds the host for an agent's `host:port` (and its monitor).
AddHost = Callable[[str], Awaitable[None]]
#: Stops the host's monitor, marks it down, drops it from the cluster and closes its backend.
RemoveHost = Callable[[str, str], Awaitable[None]]


class Membership:
    def __init__(self, cluster: Cluster, add: AddHost, remove: RemoveHost) -> None:
        self.cluster = cluster
        self._add = add
        self._remove = remove
        self.origins: dict[str, str] = {}  # host id -> how it joined ("mdns", "register", "scan")
        self._leases: dict[str, float] = {}  # registered host id -> monotonic time its registration lapses
        self._lock = asyncio.Lock()

    @property
    def discovered(self) -> list[str]:
        return sorted(self.origins)

    async def join(self, target: str, origin: str, *, lease: float | None = None) -> bool:
        """Add `target` (an agent's host:port) unless it is already a member; True when it was added."""
        async with self._lock:
            if lease is not None:
                self._leases[target] = time.monotonic() + lease
            if target in self.cluster.hosts:
                return False
            await self._add(target)
            self.origins[target] = origin
        log.info("host %s joined (%s)", target, origin)
        return True

    async def leave(self, target: str, reason: str) -> bool:
        """Remove a host this membership added; hosts from --servers stay whatever happens."""
        async with self._lock:
            if target not in self.origins:
                return False
            del self.origins[target]
            self._leases.pop(target, None)
            await self._remove(target, reason)
        log.info("host %s left: %s", target, reason)
        return True

    async def expire(self) -> None:
        """Drop registered hosts whose registration lapsed and that no longer answer."""
        now = time.monotonic()
        for target, until in list(self._leases.items()):
            host = self.cluster.hosts.get(target)
            if until < now and (host is None or not host.healthy):
                await self.leave(target, "registration expired")

    async def close(self) -> None:
        """Forget discovered hosts' bookkeeping; the context closes their backends with the rest."""
        self.origins.clear()
        self._leases.clear()
