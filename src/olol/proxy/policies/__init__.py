"""Routing policies (`--balancer`): one small class a module, built by name here."""

from __future__ import annotations

from olol.cluster import LatencyBook
from olol.cluster.routing import Candidate, Policy
from olol.proxy.policies.adaptive import Adaptive
from olol.proxy.policies.least_connections import LeastConnections
from olol.proxy.policies.round_robin import RoundRobin

__all__ = ["DEFAULT_POLICY", "POLICIES", "Adaptive", "Candidate", "LeastConnections", "Policy", "RoundRobin",
           "make_policy"]

DEFAULT_POLICY = Adaptive.name
POLICIES = (Adaptive.name, LeastConnections.name, RoundRobin.name)


def make_policy(name: str, stats: LatencyBook) -> Policy:
    key = name.strip().lower().replace("-", "_")
    if key == Adaptive.name:
        return Adaptive(stats)
    if key in (LeastConnections.name, "least_conn"):
        return LeastConnections()
    if key == RoundRobin.name:
        return RoundRobin()
    raise ValueError(f"unknown balancer {name!r}; choose one of {', '.join(POLICIES)}")
