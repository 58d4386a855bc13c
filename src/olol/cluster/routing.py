"""What a routing policy sees and the one thing it does: order the candidate hosts; what a request asks for.

The router has already kept only hosts that can serve the request (model-aware,
healthy, quantization fallback); the policy ranks them best first. The router
walks that order, skipping saturated hosts and moving on after failures, so a
policy never needs to know about retries, queues or affinity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from olol.cluster import Host

__all__ = ["Candidate", "Policy", "PrefixPolicy", "RouteRequest"]


@dataclass(frozen=True)
class RouteRequest:
    model: str
    session: str | None = None  # affinity key, see `olol.proxy.affinity.session_key`
    prefix: bytes | None = None  # routing text for a prefix-aware policy, see `olol.proxy.affinity.prefix_text`


@dataclass(frozen=True, eq=False)
class Candidate:
    host: Host
    model: str  # the name to send upstream: the request's own, or a compatible quant under fallback
    exact: bool = True  # False when serving a quantization fallback

    @property
    def loaded(self) -> bool:
        return self.host.is_loaded(self.model)


class Policy(Protocol):
    name: str

    def rank(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        """The candidates, best first. Must return every candidate it was given."""
        ...

    def best(self, candidates: Sequence[Candidate]) -> Candidate | None:
        """The first candidate `rank` would give whose host is not saturated (None if all are).

        What the router asks on every request without an affinity key: one pass, no sort of the
        whole field. A call advances the policy's turn exactly as `rank` does.
        """
        ...


@runtime_checkable
class PrefixPolicy(Protocol):
    """A policy that also routes on the prompt itself (`olol.proxy.policies.cache_aware`)."""

    name: str

    def route(self, candidates: Sequence[Candidate], text: bytes) -> tuple[Candidate, str] | None:
        """The host for a prompt with routing text `text` and the reason to report, or None if all are saturated."""
        ...

    def expected(self, candidate: Candidate, text: bytes) -> float:
        """Seconds the prompt should take on `candidate`'s host alone: how long its slot stays busy."""
        ...

    def patience(self, candidates: Sequence[Candidate], text: bytes,
                 waiting: Mapping[str, int]) -> tuple[str, float] | None:
        """(host, seconds) when the prompt should wait for that host's slot now evaluating its prefix
        (`waiting`: requests already held per host); None to route it now."""
        ...
