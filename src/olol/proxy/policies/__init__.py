"""Routing policies (`--balancer`): one small class a module, built by name here."""

from __future__ import annotations

from collections.abc import Callable

from olol.cluster import CacheBook, LatencyBook
from olol.cluster.routing import Candidate, Policy, PrefixPolicy
from olol.proxy.policies.adaptive import Adaptive
from olol.proxy.policies.cache_aware import CacheAware
from olol.proxy.policies.least_connections import LeastConnections
from olol.proxy.policies.round_robin import RoundRobin

__all__ = ["DEFAULT_POLICY", "POLICIES", "Adaptive", "CacheAware", "Candidate", "LeastConnections", "Policy",
           "PrefixPolicy", "RoundRobin", "make_policy"]

#: `--balancer` name -> how to build the policy from the cluster's latency book, its cache book and the
#: bounded-load factor. A new policy is one module beside these (ranking `Candidate`s, see
#: `olol.cluster.routing.Policy`), its test, and one line here.
_FACTORIES: dict[str, Callable[[LatencyBook, CacheBook, float], Policy]] = {
    Adaptive.name: lambda stats, _caches, _load: Adaptive(stats),
    CacheAware.name: lambda stats, caches, load: CacheAware(stats, caches, load_factor=load),
    LeastConnections.name: lambda _stats, _caches, _load: LeastConnections(),
    RoundRobin.name: lambda _stats, _caches, _load: RoundRobin(),
}
_ALIASES = {"least_conn": LeastConnections.name, "cache": CacheAware.name}

DEFAULT_POLICY = CacheAware.name
POLICIES = tuple(_FACTORIES)


def make_policy(name: str, stats: LatencyBook, caches: CacheBook | None = None, *,
                load_factor: float = 1.25) -> Policy:
    key = name.strip().lower().replace("-", "_")
    factory = _FACTORIES.get(_ALIASES.get(key, key))
    if factory is None:
        raise ValueError(f"unknown balancer {name!r}; choose one of {', '.join(POLICIES)}")
    return factory(stats, caches or CacheBook(), load_factor)
