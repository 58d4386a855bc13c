"""One placement run: a model onto several hosts, each by the cheapest way open to it.

Every target host works through its list of acceptable names (best first, see
`olol.placement.quant`). For each name it:
1. copies it over the LAN from a host that has it (an agent reads its files),
   or waits for the host already downloading it and copies from there, so the
   registry is asked once per model rather than once per host;
2. else downloads it from the registry, becoming the source the others wait for;
3. else moves on to the next name (the registry does not have this one, or a
   copy failed), saying so on the feed.

What the client sees is one Ollama-format pull feed (`ProgressMerger`), each
layer line annotated with the host it came from and that host's own totals,
so `olol pull` can draw a bar per host while Ollama clients see a normal pull.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from olol.cluster import Host, normalize
from olol.cluster.backend import JSON
from olol.cluster.fanout import as_olol_error
from olol.errors import BackendUnavailable, OlolError, Unsupported
from olol.placement.jobs import PlacementJob
from olol.placement.progress import DONE, ProgressMerger, fan_in
from olol.placement.quant import Substitution
from olol.placement.targets import Room, is_agent

__all__ = ["Replication", "Target"]

log = logging.getLogger(__name__)

_NOT_IN_REGISTRY = ("file does not exist", "not found", "manifest unknown")
#: Level-suffixed names a host asks the registry for before it settles for the plain name:
#: registries name variants differently (`8b-q4_K_M` vs `8b-instruct-q4_K_M`), so misses are cheap but not free.
MAX_REGISTRY_MISSES = 3


@dataclass
class Target:
    room: Room
    names: list[str]  # acceptable names, best first

    @property
    def host(self) -> Host:
        return self.room.host


class _Note(dict[str, Any]):
    """A line for the client about one host that is not pull progress (a fallback, a wait, a substitution)."""


@dataclass
class _Outcome:
    name: str = ""
    via: str = ""


@dataclass
class Replication:
    model: str  # as requested
    targets: Sequence[Target]
    job: PlacementJob
    sources: Sequence[Host] = ()  # hosts outside the targets that hold the model (or a variant) and can be read
    lan_copy: bool = True
    update_holders: bool = True  # holders re-pull from the registry (Ollama's `pull` semantics)
    staging: Path = field(default_factory=lambda: Path("."))  # for copies the proxy relays into plain Ollama
    _seeds: dict[str, asyncio.Future[Host | None]] = field(default_factory=dict)
    _have: dict[str, list[Host]] = field(default_factory=dict)
    _missing: set[str] = field(default_factory=set)
    _registry_down: str = ""
    _copies: Counter[str] = field(default_factory=Counter)
    outcomes: dict[str, _Outcome] = field(default_factory=dict)
    substitutions: list[Substitution] = field(default_factory=list)

    # ------------------------------------------------------------------ the feed
    async def feed(self, before_final: Callable[[], Awaitable[None]] | None = None) -> AsyncGenerator[JSON, None]:
        """The merged progress feed; ends with "success" (and an `olol` report) or an `{"error"}` line
        (`before_final` is awaited just before it)."""
        merger = ProgressMerger([t.host.id for t in self.targets])
        # Sources first: the host that starts a download must be one the others can copy from.
        order = sorted(self.targets, key=lambda t: not t.room.source)
        feeds = [(t.host.id, partial(self._work, t)) for t in order]
        async with contextlib.aclosing(fan_in(feeds)) as items:
            async for host_id, item in items:
                if item is not DONE:
                    for line in self._merge(merger, host_id, item):
                        yield line
        if before_final is not None:
            await before_final()
        yield self._final(merger)

    def _merge(self, merger: ProgressMerger, host_id: str, item: object) -> list[JSON]:
        progress = self.job.host(host_id)
        if isinstance(item, _Note):
            if item["status"] in self.job.notes:
                return []  # said once per pull: the same failure for each quant tried says nothing new
            self.job.notes.append(str(item["status"]))
            return [dict(item)]
        if isinstance(item, Unsupported):
            progress.state, progress.error = "skipped", item.message
            return merger.skip(host_id, item.message)
        if isinstance(item, BaseException):
            error = as_olol_error(item)
            progress.state, progress.error = "failed", error.message
            log.warning("placing %s on %s failed: %s", self.model, host_id, progress.error)
            lines = merger.fail(host_id, progress.error)
            lines[0]["olol"]["code"] = error.status  # what a `stream: false` pull answers with (manage.FAILURE_CODE)
            return lines
        assert isinstance(item, dict)
        if item.get("status") == "success":
            progress.state = "done"
        lines = merger.feed(host_id, item)
        if item.get("digest"):
            progress.layer(str(item["digest"]), int(item.get("total") or 0), int(item.get("completed") or 0))
            for line in lines:
                line["olol"] = {
                    "host": host_id,
                    "model": progress.model,
                    "via": progress.via,
                    "completed": progress.completed,
                    "total": progress.total,
                }
        return lines

    def _final(self, merger: ProgressMerger) -> JSON:
        final = merger.final()
        report: JSON = final.setdefault("olol", {}) if "error" not in final else {}
        report.update(
            model=self.model,
            models={h: o.name for h, o in self.outcomes.items()},
            via={h: o.via for h, o in self.outcomes.items()},
            job=self.job.id,
        )
        if self.substitutions:
            report["substitutions"] = [s.to_json() for s in self.substitutions]
        if "error" in final:
            final["olol"] = report
        return final

    # ------------------------------------------------------------------ one host
    def _note(self, host: Host, text: str, **extra: Any) -> _Note:
        log.info("placing %s on %s: %s", self.model, host.id, text)
        return _Note(status=f"{host.id}: {text}", olol={"host": host.id, "note": text, **extra})

    def _placed(self, target: Target, name: str, via: str) -> None:
        key = normalize(name)
        self._have.setdefault(key, []).append(target.host)
        seed = self._seeds.get(key)
        if seed is not None and not seed.done() and target.room.source:
            seed.set_result(target.host)
        self.outcomes[target.host.id] = _Outcome(name, via)
        if key != normalize(self.model):
            mem = target.room.mem_free
            fit = f"best level for {mem / (1 << 30):.1f} GiB free, " if mem is not None else ""
            self.substitutions.append(Substitution(self.model, name, f"{fit}on {target.host.id}, {via}"))
            log.info("placed %s on %s in place of %s (%s)", name, target.host.id, self.model, via)

    async def _work(self, target: Target) -> AsyncIterator[JSON]:
        host, progress = target.host, self.job.host(target.host.id)
        if target.room.holder is not None:
            async for line in self._keep(target, target.room.holder):
                yield line
            return
        last: OlolError | None = None
        misses = 0
        for i, name in enumerate(target.names):
            more = i + 1 < len(target.names)  # a note about a fallback only when there is one to fall back to
            key = normalize(name)
            progress.model = name
            source = self._source(key, host) if self.lan_copy and target.room.receive else None
            if source is None and self.lan_copy and target.room.receive:
                seed = self._seeds.get(key)
                if seed is not None and not seed.done():
                    yield self._note(host, f"waiting for {name} to reach a host, then copying it over the LAN")
                    source = await asyncio.shield(seed)
            if source is not None:
                try:
                    async for line in self._copy(source, target, name):
                        yield line
                    self._placed(target, name, f"copy from {source.id}")
                    return
                except BackendUnavailable as exc:
                    if not await _alive(host):
                        raise
                    last = exc
                except OlolError as exc:
                    last = exc
                yield self._note(host, f"copy of {name} from {source.id} failed ({last.message}); trying the registry")
            if key in self._missing or self._registry_down:
                continue
            if name != self.model and misses >= MAX_REGISTRY_MISSES and name != target.names[-1]:
                continue
            try:
                async for line in self._pull(target, name):
                    yield line
                self._placed(target, name, "registry")
                return
            except Unsupported:
                raise
            except OlolError as exc:
                last = exc
                if isinstance(exc, BackendUnavailable) and not await _alive(host):
                    raise
                if any(s in exc.message for s in _NOT_IN_REGISTRY):
                    self._missing.add(key)
                    misses += 1
                    if more:
                        yield self._note(host, f"{name} is not in the registry")
                else:
                    self._registry_down = exc.message
                    if more:
                        yield self._note(host, f"registry unavailable ({exc.message}); only LAN copies from now on")
        raise last or OlolError(f"no variant of {self.model} could be placed on {host.id}")

    async def _keep(self, target: Target, name: str) -> AsyncIterator[JSON]:
        """A host that already holds the model: refresh it from the registry if asked, keep it either way."""
        host = target.host
        self.job.host(host.id).model = name
        if self.update_holders and not self._registry_down:
            try:
                async for line in self._pull(target, name, final=False):
                    yield line
            except Unsupported:
                pass
            except OlolError as exc:
                yield self._note(host, f"registry pull failed ({exc.message}); keeping its copy")
        self._placed(target, name, "already there")
        yield {"status": "success"}

    def _source(self, key: str, dest: Host) -> Host | None:
        """The least busy healthy agent holding `key` that we can read from, or None."""
        found = [h for h in self._have.get(key, []) if is_agent(h)]
        found += [t.host for t in self.targets if t.room.source and t.host.has_model(key)]
        found += [h for h in self.sources if h.has_model(key)]
        found = [h for h in dict.fromkeys(found) if h is not dest and h.healthy]
        return min(found, key=lambda h: (self._copies[h.id], h.load), default=None)

    async def _pull(self, target: Target, name: str, *, final: bool = True) -> AsyncIterator[JSON]:
        """A registry pull on the host; as the first host to ask for `name`, the others wait for it."""
        key = normalize(name)
        progress = self.job.host(target.host.id)
        progress.state, progress.via = "pulling", "registry"
        progress.layers.clear()  # a new attempt: the bar starts over
        seed: asyncio.Future[Host | None] | None = None
        if final and target.room.source and (key not in self._seeds or self._seeds[key].done()):
            seed = self._seeds[key] = asyncio.get_running_loop().create_future()
        try:
            if seed is not None and self._followers(target):
                try:
                    async for line in self._download(target, name, seed):
                        yield line
                    return
                except OlolError as exc:
                    if any(s in exc.message for s in _NOT_IN_REGISTRY) or not await _alive(target.host):
                        raise
                    why = exc.message if not isinstance(exc, Unsupported) and exc.status != 501 else ""
                    if why:  # an old agent (501) or a host that cannot store downloads falls back silently
                        yield self._note(
                            target.host, f"download by the agent failed ({why}); pulling through its Ollama"
                        )
            succeeded = False
            async for line in target.host.backend.pull({"model": name, "stream": True}):
                succeeded = line.get("status") == "success"
                if not final and succeeded:
                    continue  # _keep sends the host's one success
                yield line
            if not succeeded:
                raise OlolError(f"pull of {name} on {target.host.id} ended before success", status=502)
        except BaseException:
            if seed is not None and not seed.done():
                seed.set_result(None)  # the hosts waiting for our download go on without it
            raise

    def _followers(self, seeder: Target) -> bool:
        """Whether other hosts of this placement will copy what `seeder` downloads."""
        return self.lan_copy and any(t is not seeder and t.room.receive and t.room.holder is None for t in self.targets)

    async def _download(self, target: Target, name: str, seed: asyncio.Future[Host | None]) -> AsyncIterator[JSON]:
        """The seeding host's agent downloads `name` itself, in order, so the others copy it while it arrives.

        The hosts waiting for this download are released as soon as its first
        blob has started: they read it from this host as it grows, and the
        registry is read once while the LAN copies run alongside it.
        """
        from olol.transfer.client import TransferClient  # grpc: see _copy

        async with TransferClient.like(target.host.backend) as client:
            succeeded = False
            async for line in client.download(name):
                if line.get("digest") and not seed.done():
                    seed.set_result(target.host)
                succeeded = line.get("status") == "success"
                yield line
        if not succeeded:
            raise OlolError(f"download of {name} on {target.host.id} ended before success", status=502)

    async def _copy(self, source: Host, target: Target, name: str) -> AsyncIterator[JSON]:
        progress = self.job.host(target.host.id)
        progress.state, progress.via = "copying", f"copy from {source.id}"
        progress.layers.clear()
        # Imported here (import cost, not a cycle): the transfer client, its protos and the fetcher take
        # about 60 ms to load, which a proxy over plain Ollama hosts never needs.
        from olol.transfer.client import TransferClient
        from olol.transfer.fetch import fetch_model
        from olol.transfer.install import OllamaSink

        self._copies[source.id] += 1
        try:
            async with contextlib.AsyncExitStack() as stack:
                if target.room.source:  # an agent fetches for itself: bytes go host to host
                    client = await stack.enter_async_context(TransferClient.like(target.host.backend))
                    stream = client.fetch(str(getattr(source.backend, "target", source.id)), name)
                else:  # a plain Ollama host: the proxy relays into its blob store
                    peer = await stack.enter_async_context(TransferClient.like(source.backend))
                    stream = fetch_model(peer, name, OllamaSink(target.host.backend, self.staging))
                succeeded = False
                async for line in stream:
                    succeeded = line.get("status") == "success"
                    yield line
                if not succeeded:
                    raise OlolError(f"copy of {name} to {target.host.id} ended before success", status=502)
        finally:
            self._copies[source.id] -= 1


async def _alive(host: Host) -> bool:
    try:
        async with asyncio.timeout(3):
            return await host.backend.healthy()
    except (OlolError, TimeoutError, OSError):
        return False
