"""Session affinity: follow-up turns of a conversation go where its KV cache is.

A key is placed by bounded-load consistent hashing and remembered (pinned), so a
conversation stays put even when a new host joins the ring. A pinned host over
the load bound (or full) does not get the turn: the key moves, and the pin with
it. When a host fails, its pins are purged.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from olol.cluster import Host
from olol.proxy.affinity.ring import load_bound, ring_for

__all__ = ["DEFAULT_LOAD_FACTOR", "SessionAffinity"]

DEFAULT_LOAD_FACTOR = 1.25


class SessionAffinity:
    def __init__(self, load_factor: float = DEFAULT_LOAD_FACTOR, max_sessions: int = 65536) -> None:
        self.load_factor = load_factor
        self._max = max_sessions
        self._pins: OrderedDict[str, str] = OrderedDict()
        self.hits = 0  # follow-up turn served by its pinned host
        self.moved = 0  # follow-up turn that had to move (overload, or pinned host not eligible)
        self.new = 0  # first sight of a key (or its host failed and it was purged)

    def route(self, key: str, hosts: Sequence[Host]) -> tuple[Host | None, str]:
        """The host for this key among `hosts` and the outcome: "hit", "moved", "new", or "full"."""
        by_id = {h.id: h for h in hosts}
        loads = {h.id: h.load for h in hosts}
        bound = load_bound(loads, self.load_factor)

        def fits(host_id: str) -> bool:
            return loads[host_id] + 1 <= bound and not by_id[host_id].saturated

        pinned = self._pins.get(key)
        if pinned is not None and pinned in by_id and fits(pinned):
            self._pins.move_to_end(key)
            self.hits += 1
            return by_id[pinned], "hit"
        target = ring_for(frozenset(by_id)).choose(key, loads, self.load_factor, fits)
        if target is None:
            return None, "full"
        if pinned is None:
            self.new += 1
            outcome = "new"
        else:
            self.moved += 1
            outcome = "moved"
        self._pin(key, target)
        return by_id[target], outcome

    def _pin(self, key: str, host_id: str) -> None:
        self._pins[key] = host_id
        self._pins.move_to_end(key)
        while len(self._pins) > self._max:
            self._pins.popitem(last=False)

    def pinned(self, key: str) -> str | None:
        return self._pins.get(key)

    def purge_host(self, host_id: str) -> int:
        """Forget every pin to a failed host; returns how many conversations lost their home."""
        stale = [k for k, h in self._pins.items() if h == host_id]
        for key in stale:
            del self._pins[key]
        return len(stale)

    @property
    def hit_rate(self) -> float | None:
        followups = self.hits + self.moved
        return self.hits / followups if followups else None

    def to_json(self) -> dict[str, Any]:
        return {
            "sessions": len(self._pins),
            "hits": self.hits,
            "moved": self.moved,
            "new": self.new,
            "hit_rate": self.hit_rate,
            "load_factor": self.load_factor,
        }
