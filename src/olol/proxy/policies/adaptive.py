"""The default policy: send each request where it is expected to finish soonest.

Cost of a candidate = expected service time on that host for that model (EWMA
of time-to-first-token + expected output tokens / EWMA tokens/s), scaled by the
queue it would join (outstanding requests + this one, over the host's parallel
slots), plus a cold-load penalty when the model is not loaded there, divided by
the host's weight. The cold-load penalty is learned (the model's load time on
cold starts) and only assumed before the first is seen, so an idle host that
would load fast is not shunned. Hosts below capacity come first, then lower tiers, then
lower cost: a priority tier only overflows to the next when it is full.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from olol.cluster import LatencyBook, normalize
from olol.cluster.routing import Candidate

__all__ = ["Adaptive"]

# Before anything is measured every host looks the same; one second keeps the
# cold-load penalty meaningful relative to it.
DEFAULT_SERVICE_TIME = 1.0
# Until a cold start has been measured: loading weights typically costs seconds.
COLD_LOAD_PENALTY = 5.0
# A fallback quant is a slightly worse answer: prefer the exact model when costs are close.
FALLBACK_PENALTY = 0.25


class Adaptive:
    name = "adaptive"

    def __init__(
        self,
        stats: LatencyBook,
        *,
        cold_load_penalty: float = COLD_LOAD_PENALTY,
        fallback_penalty: float = FALLBACK_PENALTY,
    ) -> None:
        self._stats = stats
        self._cold = cold_load_penalty
        self._fallback = fallback_penalty
        self._counter = itertools.count()

    def cost(self, candidate: Candidate) -> float:
        host = candidate.host
        model = normalize(candidate.model)
        service = self._stats.service_time(host.id, model)
        if service is None:
            service = DEFAULT_SERVICE_TIME
        queue = (host.load + 1) / max(1, host.parallel)
        cost = service * queue
        if not candidate.loaded:
            learned = self._stats.cold_load(model)
            cost += self._cold if learned is None else learned
        if not candidate.exact:
            cost += self._fallback * service
        return cost / max(host.weight, 1e-6)

    def _key(self, candidate: Candidate, turn: int) -> tuple[int, float, int]:
        return candidate.host.tier, self.cost(candidate), turn

    def rank(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        n = max(1, len(candidates))
        offset = next(self._counter)
        # The rotating index only breaks exact ties, e.g. identical idle hosts before any measurement.
        keyed = [
            ((c.host.saturated, *self._key(c, (i - offset) % n)), c)
            for i, c in enumerate(sorted(candidates, key=_host_id))
        ]
        keyed.sort(key=lambda kc: kc[0])
        return [c for _, c in keyed]

    def best(self, candidates: Sequence[Candidate]) -> Candidate | None:
        n = max(1, len(candidates))
        offset = next(self._counter)
        choice: Candidate | None = None
        best_key: tuple[int, float, int] | None = None
        # Sorted as in `rank` so ties rotate the same way; costed only when a host has a free slot.
        for i, c in enumerate(sorted(candidates, key=_host_id) if n > 1 else candidates):
            if c.host.saturated:
                continue
            key = self._key(c, (i - offset) % n)
            if best_key is None or key < best_key:
                choice, best_key = c, key
        return choice


def _host_id(candidate: Candidate) -> str:
    return candidate.host.id
