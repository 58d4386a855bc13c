"""Baseline: hand requests to the eligible hosts in turn, ignoring load and speed."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from olol.cluster.routing import Candidate

__all__ = ["RoundRobin"]


class RoundRobin:
    name = "round_robin"

    def __init__(self) -> None:
        self._counter = itertools.count()

    def rank(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        if not candidates:
            return []
        # Rotating a list ordered by host id keeps the turn order stable while hosts come and go.
        ordered = sorted(candidates, key=lambda c: c.host.id)
        start = next(self._counter) % len(ordered)
        return ordered[start:] + ordered[:start]

    def best(self, candidates: Sequence[Candidate]) -> Candidate | None:
        return next((c for c in self.rank(candidates) if not c.host.saturated), None)
