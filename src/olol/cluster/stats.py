"""Exponentially weighted latency statistics per host and model.

Routing needs "how long would this host take for this model right now": the
EWMA of time-to-first-token plus the expected output length over the EWMA of
tokens/s. EWMAs follow drift (thermal throttling, a co-tenant) without keeping
history, and a host nobody has measured borrows the model's cluster mean so it
still gets tried.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Ewma", "HostModelStats", "LatencyBook"]

DEFAULT_EXPECTED_TOKENS = 128.0


@dataclass
class Ewma:
    alpha: float = 0.3
    value: float | None = None

    def update(self, sample: float) -> None:
        if self.value is None:
            self.value = sample
        else:
            self.value += self.alpha * (sample - self.value)


@dataclass
class HostModelStats:
    ttft: Ewma = field(default_factory=Ewma)  # seconds
    tokens_per_s: Ewma = field(default_factory=Ewma)
    requests: int = 0
    failures: int = 0

    def service_time(self, expected_tokens: float) -> float | None:
        """Seconds one request is expected to take, or None before any measurement."""
        if self.ttft.value is None:
            return None
        gen = expected_tokens / self.tokens_per_s.value if self.tokens_per_s.value else 0.0
        return self.ttft.value + gen

    def to_json(self) -> dict[str, Any]:
        return {
            "ttft_s": self.ttft.value,
            "tokens_per_s": self.tokens_per_s.value,
            "requests": self.requests,
            "failures": self.failures,
        }


class LatencyBook:
    """All EWMAs of the cluster, keyed by (host id, normalised model)."""

    def __init__(self, alpha: float = 0.3) -> None:
        self._alpha = alpha
        self._stats: dict[tuple[str, str], HostModelStats] = {}
        # Output length is a property of the workload, not the host: one EWMA per model.
        self._tokens: dict[str, Ewma] = {}
        # So is the cost of loading a model's weights (roughly): one EWMA per model, from cold starts.
        self._cold: dict[str, Ewma] = {}

    def _entry(self, host: str, model: str) -> HostModelStats:
        key = (host, model)
        entry = self._stats.get(key)
        if entry is None:
            entry = self._stats[key] = HostModelStats(Ewma(self._alpha), Ewma(self._alpha))
        return entry

    def get(self, host: str, model: str) -> HostModelStats | None:
        return self._stats.get((host, model))

    def record_ttft(self, host: str, model: str, seconds: float) -> None:
        entry = self._entry(host, model)
        entry.ttft.update(seconds)
        entry.requests += 1

    def record_generation(self, host: str, model: str, tokens: int, seconds: float) -> None:
        if tokens <= 0:
            return
        self._tokens.setdefault(model, Ewma(self._alpha)).update(float(tokens))
        if seconds > 0:
            self._entry(host, model).tokens_per_s.update(tokens / seconds)

    def record_cold_load(self, model: str, seconds: float) -> None:
        self._cold.setdefault(model, Ewma(self._alpha)).update(seconds)

    def cold_load(self, model: str) -> float | None:
        """Seconds a host took to load this model when it was not loaded, or None before any was seen."""
        ewma = self._cold.get(model)
        return ewma.value if ewma is not None else None

    def record_failure(self, host: str, model: str) -> None:
        self._entry(host, model).failures += 1

    def expected_tokens(self, model: str) -> float:
        ewma = self._tokens.get(model)
        return ewma.value if ewma is not None and ewma.value is not None else DEFAULT_EXPECTED_TOKENS

    def generation_time(self, host: str, model: str) -> float:
        """Seconds the expected output takes on `host` (the model's mean speed for an unmeasured host; 0 if none is)."""
        entry = self._stats.get((host, model))
        rate = entry.tokens_per_s.value if entry is not None else None
        if rate is None:
            rates = self.rates(model)
            rate = sum(rates) / len(rates) if rates else None
        return self.expected_tokens(model) / rate if rate else 0.0

    def service_time(self, host: str, model: str) -> float | None:
        """This host's own estimate, else the model's mean over measured hosts, else None."""
        expected = self.expected_tokens(model)
        entry = self._stats.get((host, model))
        own = entry.service_time(expected) if entry is not None else None
        if own is not None:
            return own
        others = [
            t for (_, m), s in self._stats.items()
            if m == model and (t := s.service_time(expected)) is not None
        ]
        return sum(others) / len(others) if others else None


    def entries(self) -> Iterator[tuple[str, str, HostModelStats]]:
        """Every (host, model, stats) measured so far."""
        for (host, model), stats in self._stats.items():
            yield host, model, stats

    def rates(self, model: str) -> list[float]:
        """Measured generation speeds (tokens/s) of `model`, one per host that has one."""
        return [s.tokens_per_s.value for (_, m), s in self._stats.items()
                if m == model and s.tokens_per_s.value is not None]

    def snapshot(self, host: str) -> dict[str, Any]:
        return {m: s.to_json() for (h, m), s in self._stats.items() if h == host}
