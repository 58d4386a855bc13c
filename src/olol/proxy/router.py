"""The router: from a request to a leased host, asking eligibility, affinity, policy and admission.

Order of questions: which hosts can serve this model (eligibility, with
quantization fallback); of those not saturated, does the conversation have a
home (affinity, bounded load); else which does the policy rank first (a
prefix-aware policy is also shown the prompt). If every eligible host is
saturated the request waits its turn in the model's queue. Under a prefix-aware
policy the prompt is then noted as cached on the host it went to, however chosen.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass

from olol.cluster import Cluster, Lease, normalize
from olol.cluster.eligibility import candidates
from olol.cluster.quant_matcher import QuantMatcher
from olol.cluster.routing import Candidate, Policy, PrefixPolicy, RouteRequest
from olol.errors import HostsDown, ModelNotFound
from olol.proxy.admission import AdmissionQueue, QueueFull
from olol.proxy.affinity import SessionAffinity

#: A host marked down for this is alive but slow (probes timed out under load), not gone.
_SLOW = re.compile(r"time(d)? ?out|deadline", re.IGNORECASE)

__all__ = ["NoEligibleHost", "Route", "Router", "route_headers"]


class NoEligibleHost(Exception):
    """Every host that could serve the request has been tried (and excluded)."""


@dataclass
class Route:
    lease: Lease
    candidate: Candidate
    reason: str  # how the host was chosen: the policy's name or "affinity:<outcome>"
    queued_s: float = 0.0
    prefix: bytes = b""  # the request's routing text, indexed as the host's cache once it has answered

    @property
    def host_id(self) -> str:
        return self.candidate.host.id

    @property
    def model(self) -> str:
        return self.candidate.model


def route_headers(route: Route, retries: int = 0) -> dict[str, str]:
    """Where and how a request was served: X-OLOL-Host, X-OLOL-Model, X-OLOL-Route."""
    parts = [route.reason]
    if not route.candidate.exact:
        parts.append("fallback")
    if route.queued_s:
        parts.append(f"queued={route.queued_s:.3f}")
    if retries:
        parts.append(f"retries={retries}")
    return {"X-OLOL-Host": route.host_id, "X-OLOL-Model": route.model, "X-OLOL-Route": ";".join(parts)}


class Router:
    def __init__(
        self,
        cluster: Cluster,
        policy: Policy,
        admission: AdmissionQueue,
        *,
        affinity: SessionAffinity | None = None,
        quant: QuantMatcher | None = None,
        rejoin_grace: float = 0.0,
    ) -> None:
        self.cluster = cluster
        #: Seconds a request whose model is only on down hosts waits for one to rejoin (a restart, or a
        #: probe that timed out under load) before `HostsDown`; 0 fails at once, as a lone Ollama does.
        self.rejoin_grace = rejoin_grace
        self.policy = policy
        self.admission = admission
        self.affinity = affinity
        self.quant = quant
        cluster.on_capacity(lambda _host: admission.notify())
        # Requests held for a host's slot that is evaluating their prefix (`_hold`), per host, and the
        # event that wakes them when a request ends anywhere (a new one each time: a broadcast).
        self._held: Counter[str] = Counter()
        self._released: asyncio.Event | None = None
        cluster.on_capacity(lambda _host: self._wake_held())
        if affinity is not None:
            cluster.on_down(lambda host: affinity.purge_host(host.id))

    def eligible(self, model: str, exclude: Collection[str] = ()) -> list[Candidate]:
        # A draining host is skipped for new requests; `_draining_has` still counts it, so a model that only
        # draining hosts hold waits in its queue (for an undrain or another host) instead of 404ing.
        hosts = [h for h in self.cluster.hosts.values() if h.routable and h.id not in exclude]
        return candidates(model, hosts, self.quant)

    def _draining_has(self, model: str, exclude: Collection[str]) -> bool:
        hosts = [h for h in self.cluster.hosts.values() if h.healthy and h.draining and h.id not in exclude]
        return bool(candidates(model, hosts, self.quant))

    def _unservable(self, model: str, exclude: Collection[str]) -> tuple[HostsDown, float] | None:
        """Why no healthy host can serve `model` when down hosts might (it is only on them, or no host
        is up to say), and how long to wait for one to come back before saying so."""
        hosts = self.cluster.hosts.values()
        if candidates(model, [h for h in hosts if h.healthy and h.id in exclude], self.quant):
            return None  # a host that is up had it and failed: its own error says more
        # Tried hosts count too: one that just failed over and was marked down is why this fails.
        down = [h for h in hosts if not h.healthy]
        on_down = {c.host.id for c in candidates(model, down, self.quant)}
        if on_down:
            them = [h for h in down if h.id in on_down]
            error = HostsDown(model, ", ".join(h.down_text() for h in them))
        elif down and len(down) == len(self.cluster.hosts):
            them = down
            error = HostsDown(model, ", ".join(h.down_text() for h in down), known=False)
        else:
            return None
        # A host that only timed out is alive but overloaded: it gets the whole queue wait, as a busy
        # one does. One that refused or dropped the connection gets the short grace of a restart.
        slow = any(_SLOW.search(h.last_error) for h in them)
        return error, self.admission.max_wait if slow else self.rejoin_grace

    @property
    def prefix_aware(self) -> bool:
        """Whether requests should carry their routing text (`RouteRequest.prefix`)."""
        return isinstance(self.policy, PrefixPolicy)

    def pick(self, request: RouteRequest, eligible: list[Candidate]) -> tuple[Candidate, str] | None:
        if (request.session is None or self.affinity is None) and request.prefix and isinstance(
                self.policy, PrefixPolicy):
            return self.policy.route(eligible, request.prefix)
        if request.session is None or self.affinity is None:
            best = self.policy.best(eligible)  # the common case: one pass, no full ranking
            return None if best is None else (best, self.policy.name)
        ranked = self.policy.rank(eligible)
        if all(c.host.saturated for c in ranked):
            return None
        hosts = list({c.host.id: c.host for c in ranked}.values())
        home, outcome = self.affinity.route(request.session, hosts)
        if home is not None:
            return next(c for c in ranked if c.host is home), f"affinity:{outcome}"
        choice = next(c for c in ranked if not c.host.saturated)
        return choice, self.policy.name

    async def acquire(self, request: RouteRequest, exclude: Collection[str] = (), *, retry: bool = False) -> Route:
        """Lease a host for the request, waiting in the model's queue if all are busy.

        Raises `ModelNotFound` when no host has the model (or a compatible one), `HostsDown` when
        only hosts that are down have it (or none is up), `NoEligibleHost` when only excluded hosts
        had it, `QueueFull` when the wait is over.
        """

        first_down: float | None = None  # when this request first found its model only on down hosts

        def attempt() -> Route | None:
            nonlocal first_down
            eligible = self.eligible(request.model, exclude)
            if not eligible:
                if self._draining_has(request.model, exclude):
                    return None  # wait for an undrain (or another host), up to the queue wait
                if (unservable := self._unservable(request.model, exclude)) is not None:
                    down, patience = unservable
                    loop = asyncio.get_running_loop()
                    if first_down is None:
                        first_down = loop.time()
                        if 0 < patience < self.admission.max_wait:  # nothing else wakes a queue then
                            loop.call_later(patience, self.admission.notify)
                    if loop.time() - first_down >= patience:
                        raise down
                    return None  # a host may rejoin within the grace: its capacity event wakes this
                if exclude:
                    raise NoEligibleHost(request.model)
                raise ModelNotFound(request.model)
            picked = self.pick(request, eligible)
            if picked is None:
                return None
            candidate, reason = picked
            prefix = request.prefix or b""
            expected = self.policy.expected(candidate, prefix) if prefix and isinstance(
                self.policy, PrefixPolicy) else 0.0
            lease = self.cluster.acquire(candidate.host, candidate.model, prefix, expected)
            return Route(lease, candidate, reason, prefix=prefix)

        held = 0.0 if retry else await self._hold(request, exclude)
        try:
            route, waited = await self.admission.admit(normalize(request.model), attempt, front=retry)
        except QueueFull:
            if first_down is not None and (unservable := self._unservable(request.model, exclude)) is not None:
                raise unservable[0] from None  # no room or time left to wait for a host: say why, not "busy"
            raise
        route.queued_s = waited + held
        return route

    async def _hold(self, request: RouteRequest, exclude: Collection[str]) -> float:
        """Wait while the policy says the prompt's prefix is being evaluated on a host and is worth waiting
        for there (see `CacheAware.patience`); returns the seconds held. Never past the first estimate
        of what waiting is worth, and re-asked whenever a request ends, so a request held behind others
        for the same prefix goes elsewhere once the line makes the wait dearer than a cold start.
        """
        policy = self.policy
        if not request.prefix or not isinstance(policy, PrefixPolicy) or (
                request.session is not None and self.affinity is not None):
            return 0.0
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = float("inf")
        held = False
        while True:
            eligible = self.eligible(request.model, exclude)
            hold = policy.patience(eligible, request.prefix, self._held) if eligible else None
            if hold is None:
                break
            host_id, worth = hold
            now = loop.time()
            deadline = min(deadline, now + worth, start + self.admission.max_wait)
            if now >= deadline:
                break
            if self._released is None:
                self._released = asyncio.Event()
            released = self._released
            held = True
            self._held[host_id] += 1
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(deadline - now):
                        await released.wait()
            finally:
                self._held[host_id] -= 1
                if not self._held[host_id]:
                    del self._held[host_id]
        return loop.time() - start if held else 0.0

    def _wake_held(self) -> None:
        if self._released is not None:
            self._released.set()
            self._released = None
