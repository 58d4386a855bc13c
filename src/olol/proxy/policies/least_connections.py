"""Baseline: the host with the fewest outstanding requests first (nginx's `least_conn`)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from olol.cluster.routing import Candidate

__all__ = ["LeastConnections"]


class LeastConnections:
    name = "least_connections"

    def __init__(self) -> None:
        self._counter = itertools.count()

    def rank(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        # Ties rotate, as nginx does, so idle hosts share the work instead of the first one taking it all.
        ordered = sorted(candidates, key=lambda c: c.host.id)
        n = max(1, len(ordered))
        offset = next(self._counter)
        keyed = sorted(
            ((c.host.load, (i - offset) % n) for i, c in enumerate(ordered)),
        )
        return [ordered[(turn + offset) % n] for _, turn in keyed]

    def best(self, candidates: Sequence[Candidate]) -> Candidate | None:
        ordered = sorted(candidates, key=lambda c: c.host.id)
        n = max(1, len(ordered))
        offset = next(self._counter)
        free = [(c.host.load, (i - offset) % n, c) for i, c in enumerate(ordered) if not c.host.saturated]
        return min(free, key=lambda lc: lc[:2])[2] if free else None
