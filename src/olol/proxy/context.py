"""`ProxyContext`: the parts of one running proxy, built once from its config and shared by handlers."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial

from aiohttp import web

from olol.backends.factory import is_ollama_url, make_backend
from olol.cluster import Cluster, Host
from olol.cluster.backend import Backend
from olol.cluster.quant_matcher import QuantMatcher
from olol.placement.service import PlacementService
from olol.proxy.admission import AdmissionQueue
from olol.proxy.affinity import SessionAffinity
from olol.proxy.config import ProxyConfig
from olol.proxy.dispatch import Dispatcher
from olol.proxy.hiding import HostHider
from olol.proxy.metrics import ProxyMetrics
from olol.proxy.monitor import HostMonitor
from olol.proxy.ondemand import build_placement
from olol.proxy.policies import make_policy
from olol.proxy.resume.settings import ResumeSettings
from olol.proxy.router import Router
from olol.proxy.session_gateway import ProxyChatGateway
from olol.sessions.service import SessionService

__all__ = ["CONTEXT", "BackendFactory", "ProxyContext"]

BackendFactory = Callable[[str], Backend]


def make_host(config: ProxyConfig, spec: str, backend: Backend) -> Host:
    """The one place a host is built: a `--servers` entry and a discovered agent get the same settings."""
    return Host(
        id=spec,
        backend=backend,
        weight=config.host_weights.get(spec, 1.0),
        tier=config.host_tiers.get(spec, 0),
        parallel=config.host_parallel.get(spec, config.default_parallel),
        kind=backend.kind,
    )


def _backend(config: ProxyConfig, spec: str) -> Backend:
    parallel = config.host_parallel.get(spec, config.default_parallel)
    return make_backend(spec, parallel=parallel if is_ollama_url(spec) else None, token=config.security.token,
                        tls=config.security.tls)


@dataclass
class ProxyContext:
    config: ProxyConfig
    cluster: Cluster
    router: Router
    dispatcher: Dispatcher
    metrics: ProxyMetrics
    admission: AdmissionQueue
    affinity: SessionAffinity | None
    monitors: dict[str, HostMonitor] = field(default_factory=dict)
    sessions: SessionService | None = None  # chat sessions (/api/sessions, gRPC), see olol.sessions
    placement: PlacementService | None = None  # replication, LAN copies, on-demand loads (olol.placement)
    hider: HostHider | None = None  # `hide_hosts`: host addresses out of what clients see
    started_at: float = field(default_factory=time.monotonic)
    resume: ResumeSettings = field(default_factory=ResumeSettings)  # resuming broken streams, see olol.proxy.resume

    @classmethod
    def build(cls, config: ProxyConfig, backend_factory: BackendFactory | None = None,
              quant: QuantMatcher | None = None) -> ProxyContext:
        cluster = Cluster()
        for spec in config.servers:
            cluster.add(make_host(config, spec, (backend_factory or partial(_backend, config))(spec)))
        admission = AdmissionQueue(config.max_queue_wait, config.max_queue)
        affinity = SessionAffinity(config.affinity_load_factor) if config.affinity else None
        quant = (quant or QuantMatcher()) if config.quant_fallback else None
        # A host that restarts, or misses probes under load, is back within 3 probe intervals.
        grace = min(3 * config.probe_interval, config.max_queue_wait, config.first_byte_timeout or math.inf)
        policy = make_policy(config.balancer, cluster.stats, cluster.caches, load_factor=config.affinity_load_factor)
        router = Router(cluster, policy, admission, rejoin_grace=grace,
                        affinity=affinity, quant=quant)
        metrics = ProxyMetrics(cluster, admission, affinity)
        dispatcher = Dispatcher(cluster, router, metrics, first_byte_timeout=config.first_byte_timeout,
                                request_timeout=config.request_timeout, max_attempts=config.max_attempts,
                                stall_timeout=config.stall_timeout)
        ctx = cls(config, cluster, router, dispatcher, metrics, admission, affinity,
                  resume=ResumeSettings(config.resume, config.max_resumes))
        if config.hide_hosts:
            ctx.hider = HostHider(lambda: list(cluster.hosts))
        ctx.monitors = {h.id: HostMonitor(h, cluster, interval=config.probe_interval) for h in cluster.hosts.values()}
        ctx.sessions = SessionService.build(
            ProxyChatGateway(cluster, router, dispatcher, affinity=affinity is not None), state_dir=config.state_dir,
            ttl=config.session_ttl, grpc_host=config.host, grpc_port=config.grpc_port, security=config.security)
        ctx.placement = build_placement(config, cluster, router, dispatcher, ctx.refresh)
        return ctx

    async def start(self) -> None:
        """Open backends, start monitors, and give every host one probe to report its models."""
        await asyncio.gather(*(h.backend.start() for h in self.cluster.hosts.values()), return_exceptions=True)
        for monitor in self.monitors.values():
            monitor.start()
        await asyncio.gather(*(m.first_probe(3 * m.timeout) for m in self.monitors.values()))
        if self.placement is not None:
            await self.placement.start()
        if self.sessions is not None:
            try:
                await self.sessions.start()  # opens the session store, then the gRPC port
            except BaseException:
                await self.stop()
                raise

    async def stop(self) -> None:
        if self.placement is not None:
            await self.placement.stop()
        if self.sessions is not None:
            await self.sessions.stop()  # first: its in-flight turns still need the hosts
        await asyncio.gather(*(m.stop() for m in self.monitors.values()))
        await asyncio.gather(*(h.backend.close() for h in self.cluster.hosts.values()), return_exceptions=True)

    async def add_host(self, target: str) -> None:
        """Build, start and monitor a host that joined while serving (discovery, registration)."""
        host = make_host(self.config, target, _backend(self.config, target))
        monitor = HostMonitor(host, self.cluster, interval=self.config.probe_interval)
        await host.backend.start()
        self.cluster.add(host)
        self.monitors[target] = monitor
        monitor.start()

    async def remove_host(self, target: str, reason: str) -> None:
        """Stop monitoring a host, let go of it everywhere, drop it and close its backend."""
        monitor = self.monitors.pop(target, None)
        host = self.cluster.hosts.get(target)
        if monitor is not None:
            await monitor.stop()
        if host is not None:
            self.cluster.mark_down(host, reason)  # listeners (affinity, queues) let go of it first
            self.cluster.hosts.pop(target, None)
            with contextlib.suppress(Exception):
                await host.backend.close()

    async def refresh(self, host_ids: Iterable[str]) -> None:
        await asyncio.gather(*(self.monitors[h].refresh() for h in host_ids if h in self.monitors))


CONTEXT: web.AppKey[ProxyContext] = web.AppKey("olol_proxy", ProxyContext)
