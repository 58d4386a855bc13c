"""The router: from a request to a leased host, asking eligibility, affinity, policy and admission.

Order of questions: which hosts can serve this model (eligibility, with
quantization fallback); of those not saturated, does the conversation have a
home (affinity, bounded load); else which does the policy rank first. If every
eligible host is saturated the request waits its turn in the model's queue.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from olol.cluster import Cluster, Lease, normalize
from olol.cluster.eligibility import candidates
from olol.cluster.quant_matcher import QuantMatcher
from olol.cluster.routing import Candidate, Policy, RouteRequest
from olol.errors import ModelNotFound
from olol.proxy.admission import AdmissionQueue
from olol.proxy.affinity import SessionAffinity

__all__ = ["NoEligibleHost", "Route", "Router", "route_headers"]


class NoEligibleHost(Exception):
    """Every host that could serve the request has been tried (and excluded)."""


@dataclass
class Route:
    lease: Lease
    candidate: Candidate
    reason: str  # how the host was chosen: the policy's name or "affinity:<outcome>"
    queued_s: float = 0.0

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
    ) -> None:
        self.cluster = cluster
        self.policy = policy
        self.admission = admission
        self.affinity = affinity
        self.quant = quant
        cluster.on_capacity(lambda _host: admission.notify())
        if affinity is not None:
            cluster.on_down(lambda host: affinity.purge_host(host.id))

    def eligible(self, model: str, exclude: Collection[str] = ()) -> list[Candidate]:
        # A draining host is skipped for new requests; `_exists` still counts it, so a model that only
        # draining hosts hold waits in its queue (for an undrain or another host) instead of 404ing.
        hosts = [h for h in self.cluster.hosts.values() if h.routable and h.id not in exclude]
        return candidates(model, hosts, self.quant)

    def _exists(self, model: str, exclude: Collection[str]) -> bool:
        """Whether some host not yet tried has it, healthy or not (a down host may come back)."""
        hosts = [h for h in self.cluster.hosts.values() if h.id not in exclude]
        return bool(candidates(model, hosts, self.quant))

    def pick(self, request: RouteRequest, eligible: list[Candidate]) -> tuple[Candidate, str] | None:
        """The best candidate with a free slot and why, or None when all are saturated."""
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

        Raises `ModelNotFound` when no host has the model (or a compatible one),
        `NoEligibleHost` when only excluded hosts had it, `QueueFull` when the wait is over.
        """

        def attempt() -> Route | None:
            eligible = self.eligible(request.model, exclude)
            if not eligible:
                if self._exists(request.model, exclude):
                    return None  # only on hosts that are down now: wait for one to rejoin
                if exclude:
                    raise NoEligibleHost(request.model)
                raise ModelNotFound(request.model)
            picked = self.pick(request, eligible)
            if picked is None:
                return None
            candidate, reason = picked
            return Route(self.cluster.acquire(candidate.host, candidate.model), candidate, reason)

        route, waited = await self.admission.admit(normalize(request.model), attempt, front=retry)
        route.queued_s = waited
        return route
