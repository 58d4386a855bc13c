"""One inference host as the cluster sees it: its backend, health, models and load.

State comes from two places: the host's own reports (an agent's state feed or
polls of a plain Ollama host, applied by the proxy's `HostMonitor`) and the
proxy's own bookkeeping of requests it sent there (`in_flight`), which is
always current while reports lag by up to a probe interval.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from olol.cluster.backend import JSON, Backend
from olol.cluster.names import normalize

__all__ = ["Host"]


@dataclass(eq=False)
class Host:
    id: str  # the server spec it was built from: "http://h:11434" or "h:50051"
    backend: Backend
    weight: float = 1.0  # relative speed/preference; the adaptive policy divides cost by it
    tier: int = 0  # priority tier: lower tiers serve first, higher tiers take the overflow
    parallel: int = 1  # requests served at once; at `load >= parallel` the host is saturated
    healthy: bool = False
    models: dict[str, JSON] = field(default_factory=dict)  # normalised name -> /api/tags entry
    running: dict[str, JSON] = field(default_factory=dict)  # normalised name -> /api/ps entry
    in_flight: int = 0  # requests this proxy has open there
    reported_in_flight: int = 0  # what the host last said (includes other clients)
    ram_free: int | None = None
    hardware: JSON = field(default_factory=dict)
    version: str = ""
    kind: str = ""
    last_seen: float = 0.0
    last_error: str = ""
    down_since: float | None = None  # wall-clock time it was first seen down; None while it is up
    loading: bool = False  # its state feed says a model is loading: silence is expected, not a failure
    # Draining: an operator took the host out of routing (new requests go elsewhere) while the
    # streams it has open finish; it stays monitored, so it is still up or down as well.
    draining: bool = False
    state_since: float = field(default_factory=time.monotonic)  # when up/down/draining last changed

    @property
    def routable(self) -> bool:
        """Whether new requests may be sent here: up and not draining."""
        return self.healthy and not self.draining

    @property
    def state(self) -> str:
        if not self.healthy:
            return "down"
        return "draining" if self.draining else "up"

    def down_text(self) -> str:
        """`id (down since 2026-01-02T03:04:05Z: reason)`, for errors that name hosts."""
        since = "" if self.down_since is None else "since " + time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.down_since))
        why = ": ".join(part for part in (since, self.last_error) if part)
        return f"{self.id} (down {why})" if why else f"{self.id} (down)"

    @property
    def load(self) -> int:
        # Our own count is current; the report may include traffic from other clients.
        return max(self.in_flight, self.reported_in_flight)

    @property
    def saturated(self) -> bool:
        return self.load >= max(1, self.parallel)

    def has_model(self, model: str) -> bool:
        return normalize(model) in self.models

    def is_loaded(self, model: str) -> bool:
        return normalize(model) in self.running

    def set_models(self, entries: list[JSON]) -> None:
        self.models = {normalize(str(e.get("name") or e.get("model") or "")): e for e in entries}
        self.models.pop(":latest", None)

    def set_running(self, entries: list[JSON]) -> None:
        self.running = {normalize(str(e.get("name") or e.get("model") or "")): e for e in entries}
        self.running.pop(":latest", None)

    def mark_loaded(self, model: str) -> None:
        """Optimistically note a model as loaded after it answered, ahead of the next report."""
        self.running.setdefault(normalize(model), {"name": model, "model": model})

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "healthy": self.healthy,
            "draining": self.draining,
            "state": self.state,
            "state_for_s": round(time.monotonic() - self.state_since, 3),
            "load": self.load,
            "in_flight": self.in_flight,
            "capacity": self.parallel,
            "weight": self.weight,
            "tier": self.tier,
            "version": self.version,
            "models": sorted(self.models),
            "loaded": sorted(self.running),
            "ram_free": self.ram_free,
            "hardware": self.hardware,
            "last_seen_s_ago": round(time.monotonic() - self.last_seen, 3) if self.last_seen else None,
            "last_error": self.last_error,
        }
