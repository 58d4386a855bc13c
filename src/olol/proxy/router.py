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
        self.held: Counter[str] = Counter()
        self._checked: tuple[Policy | None, PrefixPolicy | None] = (None, None)
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
    def prefix_policy(self) -> PrefixPolicy | None:
        """The policy, if it also routes on the prompt itself (asked once per policy: an `isinstance`
        of a runtime-checkable protocol looks up each of its members, ~50 us a request)."""
        policy = self.policy
        if policy is not self._checked[0]:  # `policy` may be wrapped after start-up (split models)
            self._checked = (policy, policy if isinstance(policy, PrefixPolicy) else None)
        return self._checked[1]

    @property
    def prefix_aware(self) -> bool:
        """Whether requests should carry their routing text (`RouteRequest.prefix`)."""
        return self.prefix_policy is not None

    def pick(self, request: RouteRequest, eligible: list[Candidate]) -> tuple[Candidate, str] | None:
        if (request.session is None or self.affinity is None) and request.prefix and (
                prefix_policy := self.prefix_policy) is not None:
            return prefix_policy.route(eligible, request.prefix)
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

        def attempt() -> Route | _Hold | None:
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
            if hold.due(eligible) is not None:
                return hold  # its prefix is being evaluated on a host since it queued: back to waiting for it
            picked = self.pick(request, eligible)
            if picked is None:
                return None
            candidate, reason = picked
            prefix = request.prefix or b""
            prefix_policy = self.prefix_policy
            expected = prefix_policy.expected(candidate, prefix) if prefix and prefix_policy is not None else 0.0
            lease = self.cluster.acquire(candidate.host, candidate.model, prefix, expected)
            return Route(lease, candidate, reason, prefix=prefix)

        hold = _Hold(self, request, exclude, enabled=not retry)
        queued = 0.0
        while True:
            queued += await hold.wait()
            try:
                admitted, waited = await self.admission.admit(normalize(request.model), attempt, front=retry)
            except QueueFull:
                if first_down is not None and (unservable := self._unservable(request.model, exclude)) is not None:
                    raise unservable[0] from None  # no room or time left to wait for a host: say why, not "busy"
                raise
            queued += waited
            if isinstance(admitted, Route):
                admitted.queued_s = queued
                return admitted

    async def released(self, timeout: float) -> None:
        """Return when a request ends anywhere (a lease released, capacity changed) or `timeout` passes."""
        if self._released is None:
            self._released = asyncio.Event()
        released = self._released
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await released.wait()

    def _wake_held(self) -> None:
        if self._released is not None:
            self._released.set()
            self._released = None


class _Hold:
    """One request's wait for a host's slot that is evaluating its prompt's prefix (`CacheAware.patience`).

    Asked before the request queues, and again by the queue each time the request's turn comes (a
    request queued while every host was full may find its prefix started meanwhile), so the request
    goes back to waiting for that slot instead of evaluating the prefix a second time elsewhere. The
    wait is re-priced whenever a request ends (one held behind others for the same prefix goes
    elsewhere once the line makes that cheaper) and never outlasts the queue wait.
    """

    def __init__(self, router: Router, request: RouteRequest, exclude: Collection[str], *, enabled: bool) -> None:
        policy = router.prefix_policy
        self._router = router
        self._request = request
        self._exclude = exclude
        self._policy = policy if enabled and request.prefix and policy is not None and (
            request.session is None or router.affinity is None) else None
        self._since: float | None = None  # when this request was first held

    def due(self, eligible: list[Candidate]) -> tuple[str, float] | None:
        """(host, seconds) to wait now for that host's slot, or None to route the request now."""
        if self._policy is None or not eligible or not self._router.cluster.caches.running:
            return None
        hold = self._policy.patience(eligible, self._request.prefix or b"", self._router.held)
        if hold is None:
            return None
        host_id, worth = hold
        now = asyncio.get_running_loop().time()
        since = now if self._since is None else self._since
        until = min(now + worth, since + self._router.admission.max_wait)
        return (host_id, until - now) if until > now else None

    async def wait(self) -> float:
        """Hold while `due` says so; the seconds held."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        held = False
        while self._policy is not None and self._router.cluster.caches.running and (
                due := self.due(self._router.eligible(self._request.model, self._exclude))) is not None:
            host_id, seconds = due
            if self._since is None:
                self._since = start
            held = True
            counts = self._router.held
            counts[host_id] += 1
            try:
                await self._router.released(seconds)
            finally:
                counts[host_id] -= 1
                if not counts[host_id]:
                    del counts[host_id]
        return loop.time() - start if held else 0.0

