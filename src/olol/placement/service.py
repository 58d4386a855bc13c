"""The proxy's model placement: where a model should go, and getting it there.

Three callers, one mechanism (`Replication`):
* `olol pull` / `/api/pull` with `replicas`, `quantize`, `min_replicas`;
* on-demand loading (`--pull-on-demand`): a request for a model no healthy host
  has triggers one shared placement, concurrent requests wait for the same one;
* the replica keeper (`--min-replicas`), re-placing models when hosts die.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from olol._fast import quant
from olol.cluster import Cluster, normalize
from olol.cluster.backend import JSON
from olol.cluster.eligibility import candidates
from olol.cluster.quant_matcher import QuantMatcher
from olol.cluster.routing import RouteRequest
from olol.errors import BadRequest, OlolError
from olol.placement.jobs import JobBook
from olol.placement.keeper import ReplicaKeeper
from olol.placement.quant import (
    BITS_PER_WEIGHT,
    Substitution,
    host_preferred_level,
    loaded_substitute,
    parameter_count,
    variant_name,
    variants_for_host,
)
from olol.placement.replicate import Replication, Target
from olol.placement.targets import Room, choose_targets, survey

__all__ = ["PlacementService"]

log = logging.getLogger(__name__)

Refresh = Callable[[Iterable[str]], Awaitable[None]]
#: A failed on-demand pull is not retried for this long: a typo'd model name must not hammer the registry.
FAILED_PULL_TTL = 30.0


class PlacementService:
    def __init__(
        self,
        cluster: Cluster,
        *,
        refresh: Refresh,
        staging: Path,
        lan_copy: bool = True,
        quant_matcher: QuantMatcher | None = None,
        min_replicas: int | None = None,
        replica_grace: float = 30.0,
        check_interval: float = 10.0,
    ) -> None:
        self.cluster = cluster
        self.refresh = refresh
        self.staging = staging
        self.lan_copy = lan_copy
        self.quant = quant_matcher
        self.jobs = JobBook()
        self.keeper = ReplicaKeeper(
            self, cluster, default_min=min_replicas, grace=replica_grace, interval=check_interval
        )
        self._loading: dict[str, asyncio.Task[str]] = {}
        self._failed: dict[str, tuple[float, str]] = {}
        self.on_demand_pulls = 0

    async def start(self) -> None:
        self.keeper.start()

    async def stop(self) -> None:
        await self.keeper.stop()
        for task in list(self._loading.values()):
            task.cancel()

    def to_json(self) -> JSON:
        return {**self.jobs.to_json(), "min_replicas": self.keeper.to_json(), "lan_copy": self.lan_copy}

    # ------------------------------------------------------------------ placing
    async def place(
        self,
        model: str,
        *,
        replicas: int | None = None,
        quantize: str | None = None,
        hosts: Sequence[str] = (),
        reason: str = "pull",
        update_holders: bool = True,
    ) -> AsyncGenerator[JSON, None]:
        """Place `model` (best variant per host) on `replicas` hosts; an Ollama-format pull feed."""
        if quantize is not None and quant.normalize_level(quantize) is None:
            raise BadRequest(f"unknown quantization {quantize!r}; known: {', '.join(quant.LEVELS)}")
        requested = variant_name(model, quantize) if quantize else model
        notes: list[JSON] = []
        substitution = self._loaded_substitute(requested)
        if substitution is not None:
            notes.append(_note(f"using {substitution.placed} for {requested}: {substitution.reason}"))
            log.info("placing %s in place of %s: %s", substitution.placed, requested, substitution.reason)
            requested, quantize = substitution.placed, None
        rooms = await survey(self.cluster.healthy_hosts(), requested)
        params = parameter_count(requested, self._entries())
        chosen, left_out = choose_targets(rooms, replicas, self._need_bytes(requested, params), hosts)
        notes += [_note(f"{host}: left out: {why}", host=host) for host, why in left_out.items()]
        if not chosen and hosts and not {r.host.id for r in rooms} & set(hosts):
            # The client named hosts the cluster does not have: its mistake, not a server fault.
            raise BadRequest(f"no such host in the cluster: {', '.join(hosts)}")
        if not chosen:
            raise OlolError(
                "no healthy host to pull to: " + ("; ".join(f"{h}: {w}" for h, w in left_out.items()) or "none is up"),
                status=503,
            )
        targets = [Target(room, self._names(requested, quantize, room, params)) for room in chosen]
        job = self.jobs.start(normalize(requested), reason, [t.host.id for t in targets])
        run = Replication(
            requested,
            targets,
            job,
            lan_copy=self.lan_copy,
            update_holders=update_holders,
            staging=self.staging,
            sources=[r.host for r in rooms if r.source and r.holder],
        )
        if substitution is not None:
            run.substitutions.append(substitution)
        if replicas is not None and len(chosen) < replicas:
            notes.append(_note(f"only {len(chosen)} of {replicas} replicas can be placed"))
        ids = [t.host.id for t in targets]
        refreshed = False

        async def refresh() -> None:
            # Before the final line: a client uses the model as soon as it reads "success".
            nonlocal refreshed
            refreshed = True
            with contextlib.suppress(Exception):
                await self.refresh(ids)

        try:
            for line in notes:
                yield line
            async for line in run.feed(refresh):
                yield line
        finally:
            self.jobs.end(job)
            if not refreshed:  # stopped early (the client left): the hosts may have changed all the same
                with contextlib.suppress(Exception):
                    await self.refresh(ids)

    def _entries(self) -> list[JSON]:
        return [entry for h in self.cluster.hosts.values() for entry in h.models.values()]

    def _loaded_substitute(self, requested: str) -> Substitution | None:
        """Step 2 of the seed's order: an asked level nobody has, but a better compatible one is loaded."""
        if quant.parse_level(requested) is None or self.cluster.hosts_with(requested):
            return None
        loaded = {name: h for h in self.cluster.healthy_hosts() for name in h.running}
        found = loaded_substitute(requested, list(loaded))
        if found is None:
            return None
        return Substitution(requested, found, f"compatible, higher quality, already loaded on {loaded[found].id}")

    def _need_bytes(self, model: str, params: float | None) -> int | None:
        for entry in self._entries():
            if normalize(str(entry.get("name") or "")) == normalize(model) and entry.get("size"):
                return int(entry["size"])
        level = quant.parse_level(model)
        if params is not None and level is not None and level in BITS_PER_WEIGHT:
            return int(params * BITS_PER_WEIGHT[level] / 8)
        return None

    def _names(self, requested: str, quantize: str | None, room: Room, params: float | None) -> list[str]:
        # A pull that names no level takes the one the host is tuned for (`olol server --quantize`) first.
        preferred = host_preferred_level(room.host.hardware) if quantize is None else None
        if preferred is not None and quant.parse_level(requested) is not None:
            preferred = None
        names = variants_for_host(
            requested, quantize=quantize or preferred, free_bytes=room.mem_free, parameters=params
        )
        if preferred is not None and requested not in names:
            names.append(requested)  # the registry's default build, if it has no such tag
        # Variants the cluster already holds come last: copying one beats placing nothing.
        level = quant.parse_level(requested)
        held = {str(e.get("name") or "") for e in self._entries()}
        compatible = [
            n
            for n in held
            if quant.base_name(n) == quant.base_name(requested)
            and (
                level is None
                or (quant.parse_level(n) is not None and quant.compatible(level, str(quant.parse_level(n))))
            )
        ]
        compatible.sort(key=lambda n: -quant.rank(quant.parse_level(n) or ""))
        seen = {normalize(n) for n in names}
        return names + [n for n in compatible if normalize(n) not in seen]

    # ------------------------------------------------------------------ on demand
    def _known(self, model: str) -> bool:
        return bool(candidates(model, self.cluster.healthy_hosts(), self.quant))

    async def ensure(self, request: RouteRequest) -> RouteRequest:
        """The dispatcher's hook: place a model no healthy host has, once for all who ask; then route to it."""
        if self._known(request.model):
            return request
        key = normalize(request.model)
        failed = self._failed.get(key)
        if failed is not None and time.monotonic() - failed[0] < FAILED_PULL_TTL:
            raise _not_found(request.model, failed[1])
        task = self._loading.get(key)
        if task is None:
            task = asyncio.create_task(self._load(request.model), name=f"on-demand {key}")
            self._loading[key] = task
            task.add_done_callback(lambda _t: self._loading.pop(key, None))
        # Shielded: one client hanging up must not cancel the pull the others wait for.
        placed = await asyncio.shield(task)
        if normalize(placed) == key:
            return request
        log.info("serving %s in place of %s (placed on demand)", placed, request.model)
        return dataclasses.replace(request, model=placed)

    async def _load(self, model: str) -> str:
        self.on_demand_pulls += 1
        log.info("%s is on no healthy host: placing it on demand", model)
        final: JSON = {}
        try:
            async for line in self.place(model, replicas=1, reason="on-demand", update_holders=False):
                final = line
        except OlolError as exc:
            final = {"error": exc.message}
        if "error" in final:
            self._failed[normalize(model)] = (time.monotonic(), str(final["error"]))
            raise _not_found(model, str(final["error"]))
        placed = [name for name in (final.get("olol") or {}).get("models", {}).values() if name]
        return placed[0] if placed else model


def _note(text: str, **extra: Any) -> JSON:
    return {"status": text, "olol": {"note": text, **extra}}


def _not_found(model: str, why: str) -> OlolError:
    return OlolError(f'model "{model}" not found, and placing it on demand failed: {why}', status=404)
