"""The cluster: every host, which models live where, and the load the proxy put on each.

Load accounting goes through `Lease`s so a request can never leak a slot: the
lease is released exactly once, whatever path the request ends on. Anything
that waits for capacity or keeps per-host state subscribes to the two events
the rest of the system needs: capacity freed, host went down.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from olol.cluster.caches import CacheBook
from olol.cluster.host import Host
from olol.cluster.names import normalize
from olol.cluster.stats import LatencyBook

__all__ = ["Cluster", "Lease"]

Listener = Callable[[Host], object]  # return values are ignored


class Lease:
    """One request's claim on one host; records its latency stats and frees the slot once."""

    __slots__ = ("_cluster", "_released", "cold", "first_byte_at", "host", "model", "prefix", "started_at")

    def __init__(self, cluster: Cluster, host: Host, model: str, prefix: bytes = b"") -> None:
        self._cluster = cluster
        self.host = host
        self.prefix = prefix  # the request's routing text, running on the host until released
        self.model = normalize(model)
        self.cold = not host.is_loaded(model)  # the host had to load the model for this request
        self.started_at = time.monotonic()
        self.first_byte_at: float | None = None
        self._released = False

    def first_byte(self, generation_s: float = 0.0) -> float:
        """Mark the first byte from the host; returns the time to first token in seconds.

        `generation_s`: how much of the wait the host spent generating, for a reply that arrived whole
        (not streamed); its first token is dated that much earlier.
        """
        now = time.monotonic()
        self.first_byte_at = max(self.started_at, now - max(0.0, generation_s))
        ttft = self.first_byte_at - self.started_at
        stats = self._cluster.stats
        stats.record_ttft(self.host.id, self.model, ttft)
        self.host.mark_loaded(self.model)
        if self.prefix:  # its prompt is evaluated: the slot holds it once the answer is written
            self._cluster.caches.first_token(self.host.id, self.prefix, stats.generation_time(self.host.id, self.model))
        return ttft

    def finished(self, tokens: int, gen_seconds: float | None = None, load_seconds: float | None = None) -> None:
        """Record output length, speed and (after a cold start) load time, as the host reported them if it did."""
        if gen_seconds is None:
            start = self.first_byte_at or self.started_at
            gen_seconds = time.monotonic() - start
        self._cluster.stats.record_generation(self.host.id, self.model, tokens, gen_seconds)
        if self.cold and load_seconds is not None:
            self._cluster.stats.record_cold_load(self.model, load_seconds)

    def failed(self) -> None:
        self._cluster.stats.record_failure(self.host.id, self.model)

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self._cluster._release(self.host)
        if self.prefix:
            self._cluster.caches.end(self.host.id, self.prefix)

    @property
    def released(self) -> bool:
        return self._released


class Cluster:
    def __init__(self, hosts: Iterable[Host] = (), stats: LatencyBook | None = None) -> None:
        self.hosts: dict[str, Host] = {}
        self.stats = stats or LatencyBook()
        self.caches = CacheBook()
        self._on_capacity: list[Listener] = []
        self._on_down: list[Listener] = []
        self.on_down(lambda host: self.caches.forget(host.id))
        for host in hosts:
            self.add(host)

    # ------------------------------------------------------------------ membership
    def add(self, host: Host) -> None:
        self.hosts[host.id] = host

    def get(self, host_id: str) -> Host | None:
        return self.hosts.get(host_id)

    def healthy_hosts(self) -> list[Host]:
        return [h for h in self.hosts.values() if h.healthy]

    def routable_hosts(self) -> list[Host]:
        """Hosts new requests may go to: healthy and not draining."""
        return [h for h in self.hosts.values() if h.routable]

    def hosts_with(self, model: str, *, healthy_only: bool = True) -> list[Host]:
        name = normalize(model)
        return [h for h in self.hosts.values() if name in h.models and (h.healthy or not healthy_only)]

    def model_index(self) -> dict[str, list[str]]:
        """Normalised model name -> ids of the healthy hosts that have it."""
        index: dict[str, list[str]] = {}
        for host in self.healthy_hosts():
            for name in host.models:
                index.setdefault(name, []).append(host.id)
        return index

    # ------------------------------------------------------------------ events
    def on_capacity(self, listener: Listener) -> None:
        """Called when a host may take more work: a lease released, a host (re)joined, its models changed."""
        self._on_capacity.append(listener)

    def on_down(self, listener: Listener) -> None:
        self._on_down.append(listener)

    def capacity_changed(self, host: Host) -> None:
        for listener in self._on_capacity:
            listener(host)

    def mark_up(self, host: Host) -> None:
        was = host.healthy
        host.healthy = True
        host.last_seen = time.monotonic()
        host.last_error = ""
        host.down_since = None
        if not was:
            host.state_since = host.last_seen
            self.capacity_changed(host)

    def mark_down(self, host: Host, reason: str) -> None:
        host.last_error = reason
        if host.down_since is None:  # never up yet counts too: the first failed probe says since when
            host.down_since = time.time()
        if not host.healthy:
            return
        host.healthy = False
        host.state_since = time.monotonic()
        for listener in self._on_down:
            listener(host)

    def drain(self, host: Host) -> None:
        """Stop routing new requests to the host; what it serves now runs to the end."""
        if not host.draining:
            host.draining = True
            host.state_since = time.monotonic()

    def undrain(self, host: Host) -> None:
        if host.draining:
            host.draining = False
            host.state_since = time.monotonic()
            self.capacity_changed(host)  # requests queued for its models may go there now

    # ------------------------------------------------------------------ load
    def acquire(self, host: Host, model: str, prefix: bytes = b"", expected_s: float = 0.0) -> Lease:
        """Claim a slot of `host` for a request (`prefix`: its routing text, while cache-aware routing is on;
        `expected_s`: how long it should take there)."""
        host.in_flight += 1
        if prefix:
            self.caches.begin(host.id, prefix, expected_s)
        return Lease(self, host, model, prefix)

    def _release(self, host: Host) -> None:
        host.in_flight -= 1
        self.capacity_changed(host)

    def to_json(self) -> dict[str, Any]:
        hosts = []
        for host in self.hosts.values():
            entry = host.to_json()
            entry["latency"] = self.stats.snapshot(host.id)
            entry["cache"] = self.caches.to_json(host.id)
            hosts.append(entry)
        return {"hosts": hosts, "models": self.model_index()}
