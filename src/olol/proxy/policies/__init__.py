"""Routing policies (`--balancer`): one small class a module, built by name here."""

from __future__ import annotations

from collections.abc import Callable

from olol.cluster import LatencyBook
from olol.cluster.routing import Candidate, Policy
from olol.proxy.policies.adaptive import Adaptive
from olol.proxy.policies.least_connections import LeastConnections
from olol.proxy.policies.round_robin import RoundRobin

__all__ = ["DEFAULT_POLICY", "POLICIES", "Adaptive", "Candidate", "LeastConnections", "Policy", "RoundRobin",
           "make_policy"]

#: `--balancer` name -> how to build the policy from the cluster's latency book. A new policy is one
#: module beside these (ranking `Candidate`s, see `olol.cluster.routing.Policy`), its test, and one line here.
_FACTORIES: dict[str, Callable[[LatencyBook], Policy]] = {
    Adaptive.name: Adaptive,
    LeastConnections.name: lambda _stats: LeastConnections(),
    RoundRobin.name: lambda _stats: RoundRobin(),
}
_ALIASES = {"least_conn": LeastConnections.name}

DEFAULT_POLICY = Adaptive.name
POLICIES = tuple(_FACTORIES)


def make_policy(name: str, stats: LatencyBook) -> Policy:
    key = name.strip().lower().replace("-", "_")
    factory = _FACTORIES.get(_ALIASES.get(key, key))
    if factory is None:
        raise ValueError(f"unknown balancer {name!r}; choose one of {', '.join(POLICIES)}")
    return factory(stats)
