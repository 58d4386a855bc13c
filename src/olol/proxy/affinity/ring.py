"""Consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam 2018).

A key walks the ring clockwise from its hash and takes the first host whose
load stays within `load_factor` x the mean load (counting the new request).
Keys therefore stick to one host while it is not overloaded, and only the
overflow moves, to the next host on the ring, the same one every time.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache

__all__ = ["HashRing", "load_bound", "ring_for"]

VNODES = 64  # virtual nodes per host: enough to spread keys evenly over a handful of hosts


def _hash(value: str) -> int:
    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "big")


def load_bound(loads: Mapping[str, int], load_factor: float) -> int:
    """The most requests any host may hold once the new one is placed."""
    if not loads:
        return 0
    mean = (sum(loads.values()) + 1) / len(loads)
    return max(1, math.ceil(load_factor * mean))


class HashRing:
    def __init__(self, hosts: Iterable[str], vnodes: int = VNODES) -> None:
        points = sorted((_hash(f"{host}#{i}"), host) for host in set(hosts) for i in range(vnodes))
        self._hashes = [p for p, _ in points]
        self._hosts = [h for _, h in points]

    def walk(self, key: str) -> list[str]:
        """Distinct hosts in ring order starting at the key's position."""
        if not self._hosts:
            return []
        start = bisect.bisect(self._hashes, _hash(key))
        seen: dict[str, None] = {}
        n = len(self._hosts)
        for i in range(n):
            seen.setdefault(self._hosts[(start + i) % n], None)
        return list(seen)

    def choose(self, key: str, loads: Mapping[str, int], load_factor: float,
               accept: Callable[[str], bool] = lambda _h: True) -> str | None:
        """First host on the key's walk that is within the load bound and accepted."""
        bound = load_bound(loads, load_factor)
        for host in self.walk(key):
            if host in loads and loads[host] + 1 <= bound and accept(host):
                return host
        return None


@lru_cache(maxsize=256)
def ring_for(hosts: frozenset[str]) -> HashRing:
    """Rings are rebuilt per host set; the sets in use are few (one per model placement)."""
    return HashRing(hosts)
