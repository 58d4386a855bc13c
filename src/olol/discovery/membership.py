"""Hosts that join and leave a running proxy: found by mDNS, registered by agents, or found by a scan.

A joined host is built exactly like a `--servers` host (same backend factory,
token and TLS, same monitor), so from then on routing, health and failover
treat it the same. Hosts given with `--servers` are never removed here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from olol.cluster import Host

if TYPE_CHECKING:
    from olol.proxy.context import ProxyContext

__all__ = ["Membership"]

log = logging.getLogger("olol.discovery")


class Membership:
    def __init__(self, ctx: ProxyContext) -> None:
        self.ctx = ctx
        self.origins: dict[str, str] = {}  # host id -> how it joined ("mdns", "register", "scan")
        self._leases: dict[str, float] = {}  # registered host id -> monotonic time its registration lapses
        self._lock = asyncio.Lock()

    @property
    def discovered(self) -> list[str]:
        return sorted(self.origins)

    async def join(self, target: str, origin: str, *, lease: float | None = None) -> bool:
        """Add `target` (an agent's host:port) unless it is already a member; True when it was added."""
        # Imported here: olol.proxy imports this package while it builds its app.
        from olol.proxy.factory import make_backend
        from olol.proxy.monitor import HostMonitor

        async with self._lock:
            if lease is not None:
                self._leases[target] = time.monotonic() + lease
            if target in self.ctx.cluster.hosts:
                return False
            config = self.ctx.config
            backend = make_backend(target, security=config.security)
            host = Host(
                id=target,
                backend=backend,
                weight=config.host_weights.get(target, 1.0),
                tier=config.host_tiers.get(target, 0),
                parallel=config.host_parallel.get(target, config.default_parallel),
                kind=backend.kind,
            )
            monitor = HostMonitor(host, self.ctx.cluster, interval=config.probe_interval)
            await backend.start()
            self.ctx.cluster.add(host)
            self.ctx.monitors[target] = monitor
            self.origins[target] = origin
            monitor.start()
        log.info("host %s joined (%s)", target, origin)
        return True

    async def leave(self, target: str, reason: str) -> bool:
        """Remove a host this membership added; hosts from --servers stay whatever happens."""
        async with self._lock:
            if target not in self.origins:
                return False
            del self.origins[target]
            self._leases.pop(target, None)
            monitor = self.ctx.monitors.pop(target, None)
            host = self.ctx.cluster.hosts.get(target)
            if monitor is not None:
                await monitor.stop()
            if host is not None:
                self.ctx.cluster.mark_down(host, reason)  # listeners (affinity, queues) let go of it first
                self.ctx.cluster.hosts.pop(target, None)
                with contextlib.suppress(Exception):
                    await host.backend.close()
        log.info("host %s left: %s", target, reason)
        return True

    async def expire(self) -> None:
        """Drop registered hosts whose registration lapsed and that no longer answer."""
        now = time.monotonic()
        for target, until in list(self._leases.items()):
            host = self.ctx.cluster.hosts.get(target)
            if until < now and (host is None or not host.healthy):
                await self.leave(target, "registration expired")

    async def close(self) -> None:
        """Forget discovered hosts' bookkeeping; the context closes their backends with the rest."""
        self.origins.clear()
        self._leases.clear()
