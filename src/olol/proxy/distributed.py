"""Split models served by the proxy as hosts of their own (`olol proxy --distributed --rpc-servers ...`).

A split model is an ordinary cluster host: its backend is the llama.cpp adapter
pointed at the `DistFront` of a dist `Coordinator`, which plans the layers over
the rpc-servers, runs `llama-server --rpc`, and re-plans over the workers left
when one fails (the front holds requests meanwhile). So it is listed in
/api/tags and /api/status, monitored, leased, retried and measured like any
host; this module only decides when a request goes there and starts the split.

Which requests: a middleware reads the body of inference requests. With
`options.distributed: true` (or an `X-OLOL-Distributed: true` header, for
OpenAI clients) the request must be served split; with `false` it must not; by
default it is split when no host that has the model has the memory for it
(`olol.split.fit`, from the GGUF's size and KV cache, not the name). Such a
request is pinned, for routing, to the split host through a context variable
that `SplitModelsLast`, wrapped around the configured policy, reads; every
other request sees split hosts last, so they only take overflow.

One split model at a time: a ggml-rpc-server serves a single client connection,
so asking for another model replaces the split once it is idle (503 before).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from olol.backends.llamacpp.backend import LlamaCppBackend
from olol.cluster import Host, normalize
from olol.discovery.proxy_side import DISCOVERY
from olol.errors import BackendUnavailable, Busy, OlolError
from olol.proxy.api.table import Route, RouteTable
from olol.proxy.monitor import HostMonitor
from olol.proxy.policies import Candidate, Policy, PrefixPolicy
from olol.security.http import PARSED_BODY
from olol.split.coordinator import Coordinator, DistConfig
from olol.split.fit import ModelNeed, can_hold, free_memory
from olol.split.front import DistFront, status
from olol.split.model_source import ModelSourceError, resolve_model, resolve_ollama_name
from olol.split.planner import PlanError
from olol.split.settings import parse_model_specs
from olol.split.workers import parse_servers

if TYPE_CHECKING:
    from olol.proxy.context import ProxyContext

__all__ = ["DISTRIBUTED", "HEADER", "DistributedModels", "SplitModelsLast", "install_distributed", "split_models_last"]

log = logging.getLogger(__name__)

HEADER = "X-OLOL-Distributed"
HOST_PREFIX = "dist:"
INFERENCE_PATHS = frozenset({"/api/generate", "/api/chat", "/api/embed", "/api/embeddings",
                             "/v1/chat/completions", "/v1/completions", "/v1/embeddings"})  # fmt: skip
DEFAULT_CTX = 2048  # the context the fit check assumes when none is configured (Ollama's default)
_UNRESOLVED_TTL = 5.0  # seconds a name that is no GGUF here is remembered as such (a pull may add it)
_FIRST_PROBE = 10.0
_HASH_LIMIT = 1 << 30  # bytes of a GGUF hashed for its digest: a bigger one would hold up its first listing

#: The split host a request must be routed to, set by the middleware for the request's own task.
_PINNED: ContextVar[str | None] = ContextVar("olol_split_host", default=None)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SplitModelsLast:
    """The configured policy, with split hosts last (overflow only) unless the request is pinned to one."""

    def __init__(self, inner: Policy, split_hosts: Callable[[], Collection[str]]) -> None:
        self.inner = inner
        self.name = inner.name
        self._split_hosts = split_hosts

    def rank(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        ranked = self.inner.rank(candidates)
        pinned = _PINNED.get()
        if pinned is not None:
            # Nothing else may serve it; an empty list makes the router wait for the host to be back.
            return [c for c in ranked if c.host.id == pinned]
        split = self._split_hosts()
        if not split:
            return ranked
        return sorted(ranked, key=lambda c: c.host.id in split)  # stable: the policy's order otherwise

    def best(self, candidates: Sequence[Candidate]) -> Candidate | None:
        if _PINNED.get() is None and not self._split_hosts():
            return self.inner.best(candidates)
        return next((c for c in self.rank(candidates) if not c.host.saturated), None)


class _PrefixSplitModelsLast(SplitModelsLast):
    """The same over a policy that also routes on the prompt (`cache_aware`): prompts keep their cache routing
    among the hosts that are not split models, and the hold for a prefix in flight, unless pinned to one."""

    def __init__(self, inner: Policy, prefix: PrefixPolicy, split_hosts: Callable[[], Collection[str]]) -> None:
        super().__init__(inner, split_hosts)
        self._prefix = prefix  # `inner` itself, seen as the prompt router it also is

    def route(self, candidates: Sequence[Candidate], text: bytes) -> tuple[Candidate, str] | None:
        split = self._split_hosts()
        pool = [c for c in candidates if c.host.id not in split] if split else list(candidates)
        if _PINNED.get() is not None or all(c.host.saturated for c in pool):
            best = self.best(candidates)  # the pinned split host, or the split hosts' overflow
            return None if best is None else (best, self.name)
        return self._prefix.route(pool, text)

    def expected(self, candidate: Candidate, text: bytes) -> float:
        return self._prefix.expected(candidate, text)

    def patience(self, candidates: Sequence[Candidate], text: bytes,
                 waiting: Mapping[str, int]) -> tuple[str, float] | None:
        if _PINNED.get() is not None:
            return None
        split = self._split_hosts()
        return self._prefix.patience([c for c in candidates if c.host.id not in split], text, waiting)


def split_models_last(inner: Policy, split_hosts: Callable[[], Collection[str]]) -> SplitModelsLast:
    """`inner` with split hosts last; a prefix-aware `inner` stays prefix-aware (the router asks which)."""
    if isinstance(inner, PrefixPolicy):
        return _PrefixSplitModelsLast(inner, inner, split_hosts)
    return SplitModelsLast(inner, split_hosts)


@dataclass
class SplitModel:
    """One model being split: the coordinator, its front, and the cluster host in front of both."""

    name: str
    path: Path
    coordinator: Coordinator
    front: DistFront
    host: Host
    monitor: HostMonitor

    def to_json(self) -> dict[str, Any]:
        return {**status(self.coordinator), "model": self.name, "path": str(self.path), "host": self.host.id,
                "front": self.front.url}  # fmt: skip


class DistributedModels:
    def __init__(self, ctx: ProxyContext, discovered: Callable[[], list[str]] | None = None) -> None:
        """`discovered()` gives the rpc-servers found on mDNS now (`ProxyDiscovery.rpc_targets`)."""
        self.ctx = ctx
        self.settings = ctx.config.distributed
        self.configured = parse_servers(self.settings.rpc_servers) if self.settings.rpc_servers else []
        self._discovered = discovered
        self._specs = {normalize(n): p for n, p in parse_model_specs(self.settings.models).items()}
        self.active: SplitModel | None = None
        self._lock = asyncio.Lock()
        self._needs: dict[Path, ModelNeed] = {}
        self._unresolved: dict[str, float] = {}  # normalised name -> when it was last found missing

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Split the first configured model now; the others are split when asked for (one at a time)."""
        for name in self._specs:
            await self.ensure(name)
            return

    async def stop(self) -> None:
        async with self._lock:
            active, self.active = self.active, None
            if active is not None:
                await self._retire(active)

    def split_hosts(self) -> Collection[str]:
        active = self.active
        return () if active is None else (active.host.id,)

    @property
    def servers(self) -> list[str]:
        """rpc-servers a new split is planned over: the configured ones in their order, then discovered ones."""
        found = self._discovered() if self._discovered is not None and self.settings.discovered else []
        return self.configured + [t for t in found if t not in self.configured]

    def to_json(self) -> dict[str, Any]:
        return {
            "rpc_servers": self.servers,
            "transport": self.settings.transport,
            "auto": self.settings.auto,
            "active": None if self.active is None else self.active.to_json(),
        }

    # ------------------------------------------------------------------ decisions
    def resolve(self, model: str) -> Path | None:
        """The GGUF of `model` on this host: a configured NAME=PATH, else an Ollama model (names only)."""
        name = normalize(model)
        if name in self._specs:
            path = self._specs[name]
            return resolve_model(path) if path else resolve_ollama_name(model, self.settings.models_dir)
        missed = self._unresolved.get(name)
        if missed is not None and time.monotonic() - missed < _UNRESOLVED_TTL:
            return None
        try:
            return resolve_ollama_name(model, self.settings.models_dir)
        except ModelSourceError:
            self._unresolved[name] = time.monotonic()
            return None

    def need(self, path: Path) -> ModelNeed:
        if path not in self._needs:
            self._needs[path] = ModelNeed.of(path, self.settings.ctx_size or DEFAULT_CTX)
        return self._needs[path]

    async def too_big(self, model: str) -> bool:
        """No host (split ones aside) that has `model` can hold it, and this host has its GGUF to split."""
        split = self.split_hosts()
        holders = [h for h in self.ctx.cluster.healthy_hosts() if h.has_model(model) and h.id not in split]
        # Cheap answers first: the file is only looked at when every holder reported its memory.
        if any(h.is_loaded(model) or free_memory(h) is None for h in holders):
            return False
        try:
            path = self.resolve(model)
            if path is None:
                return False
            cached = self._needs.get(path)
            need = cached if cached is not None else await asyncio.to_thread(self.need, path)  # reads the header
        except (OSError, ValueError) as exc:  # ModelSourceError is an OSError
            log.warning("cannot size %s for splitting: %s", model, exc)
            return False
        return not any(can_hold(h, model, need) for h in holders)

    async def host_for(self, body: dict[str, Any], headers: Any) -> Host | None:
        """The split host this request must go to, started if need be; None: route it as usual."""
        model = body.get("model") or body.get("name")
        if not isinstance(model, str) or not model.strip():
            return None
        if body.get("keep_alive") in (0, "0", "0s", "0m"):
            return None  # an unload: never start a split for it
        wanted = _wanted(body, headers)
        if wanted is None:  # the client left it to the proxy
            wanted = self.settings.auto and await self.too_big(model)
        return await self.ensure(model) if wanted else None

    # ------------------------------------------------------------------ splits
    async def ensure(self, model: str) -> Host:
        """The host serving `model` split, starting it (and retiring another idle split) if needed."""
        name = normalize(model)
        active = self.active
        if active is not None and active.name == name:
            return active.host
        async with self._lock:
            active = self.active
            if active is not None and active.name == name:
                return active.host
            try:
                path = self.resolve(model)
            except ModelSourceError as exc:
                raise OlolError(str(exc), status=404) from None
            if path is None:
                raise OlolError(f'model "{model}" not found for a split: no GGUF of it on the proxy host', 404)
            if active is not None:
                if active.host.in_flight:
                    raise Busy(f"the rpc-servers are serving {active.name} split; try {model} when it is idle")
                self.active = None
                await self._retire(active)
            log.info("splitting %s across %s", name, ", ".join(self.servers) or "(no rpc-servers)")
            self.active = await self._launch(name, path)
            return self.active.host

    async def _launch(self, name: str, path: Path) -> SplitModel:
        s, config = self.settings, self.ctx.config
        servers = self.servers
        if not servers:
            raise OlolError(f"cannot split {name}: no rpc-server is configured (--rpc-servers) or discovered", 503)
        coordinator = Coordinator(DistConfig(
            servers=servers, model=path, alias=name, transport=s.transport,
            token=config.security.token, tls=config.security.tls, ctx_size=s.ctx_size, threads=s.threads,
            parallel=s.parallel, margin=s.margin, objective=s.objective,
            llama_server_bin=Path(s.llama_server_bin) if s.llama_server_bin else None,
        ))  # fmt: skip
        started = time.monotonic()
        try:
            await coordinator.start()  # closes itself when it fails
        except PlanError as exc:
            raise OlolError(f"cannot split {name} across {', '.join(servers)}: {exc}", status=503) from None
        front = DistFront(coordinator)
        try:
            await front.start()
        except BaseException:
            await coordinator.close()
            raise
        backend = LlamaCppBackend(url=front.url, model_path=path, model_name=name, digest=_digest(path))
        host = Host(id=HOST_PREFIX + name, backend=backend, tier=1, parallel=s.parallel or 1, kind=backend.kind)
        monitor = HostMonitor(host, self.ctx.cluster, interval=config.probe_interval)
        split = SplitModel(name, path, coordinator, front, host, monitor)
        try:
            await backend.start()
            self.ctx.cluster.add(host)
            self.ctx.monitors[host.id] = monitor
            monitor.start()
            await monitor.first_probe(_FIRST_PROBE)
            if not host.healthy:
                raise BackendUnavailable(f"split {name} started but does not answer: {host.last_error}")
        except BaseException:
            await self._retire(split)
            raise
        log.info("serving %s split across %s (layers %s) as host %s, ready in %.1fs", name,
                 ", ".join(coordinator.plan.used_addresses if coordinator.plan else ()),
                 coordinator.plan.tensor_split if coordinator.plan else (), host.id,
                 time.monotonic() - started)  # fmt: skip
        return split

    async def _retire(self, split: SplitModel) -> None:
        """Take the host out of the cluster (listeners first), then stop its front and coordinator."""
        monitor = self.ctx.monitors.pop(split.host.id, None)
        if monitor is not None:
            await monitor.stop()
        if self.ctx.cluster.hosts.get(split.host.id) is split.host:
            self.ctx.cluster.mark_down(split.host, "split retired")
            self.ctx.cluster.hosts.pop(split.host.id, None)
        with contextlib.suppress(Exception):
            await split.host.backend.close()
        await split.front.close()
        await split.coordinator.close()


def _digest(path: Path) -> str | None:
    """An Ollama blob's digest is its name; other files are hashed (None) unless too big to hash in time."""
    if path.name.startswith("sha256-") and len(path.name) == 7 + 64:
        return path.name[7:]
    return None if path.stat().st_size < _HASH_LIMIT else ""


def _wanted(body: dict[str, Any], headers: Any) -> bool | None:
    """True/False when the client asked for (or against) a split; None: the proxy decides."""
    options = body.get("options")
    if isinstance(options, dict) and isinstance(options.get("distributed"), bool):
        return bool(options["distributed"])
    value = headers.get(HEADER)
    if value is None:
        return None
    return value.strip().lower() in ("1", "true", "yes", "on")


DISTRIBUTED: web.AppKey[DistributedModels] = web.AppKey("olol_distributed", DistributedModels)


def install_distributed(app: web.Application, ctx: ProxyContext, api: RouteTable) -> DistributedModels:
    """Wire split models into the app: the routing middleware, the policy wrapper, `/api/distributed` (a row
    of the proxy's route table `api`),
    and start-up/clean-up (after the configured hosts' first probe, before the context closes backends)."""
    discovery = app.get(DISCOVERY)  # installed before this, when discovery is on
    service = DistributedModels(ctx, discovery.rpc_targets if discovery is not None else None)
    ctx.router.policy = split_models_last(ctx.router.policy, service.split_hosts)

    @web.middleware
    async def route_split(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method != "POST" or request.path not in INFERENCE_PATHS:
            return await handler(request)
        body = request.get(PARSED_BODY)  # decoded by the HTTP guard, when it runs
        if body is None:
            # aiohttp keeps the body it read: the handler reads the same bytes again.
            try:
                body = json.loads(await request.read())
            except ValueError:
                return await handler(request)  # the handler answers malformed JSON in its own words
        host = await service.host_for(body, request.headers) if isinstance(body, dict) else None
        if host is None:
            return await handler(request)
        pinned = _PINNED.set(host.id)
        try:
            return await handler(request)
        finally:
            _PINNED.reset(pinned)

    async def distributed_status(_request: web.Request) -> web.Response:
        return web.json_response(service.to_json())

    async def start(_app: web.Application) -> None:
        await service.start()

    async def stop(_app: web.Application) -> None:
        await service.stop()

    app.middlewares.append(route_split)
    api.add(Route("GET", "/api/distributed", distributed_status))
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app[DISTRIBUTED] = service
    return service
