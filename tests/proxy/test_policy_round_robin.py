from __future__ import annotations

from collections import Counter

from olol.proxy.policies import RoundRobin
from tests.proxy.fakes import cand, host, ids


def test_rotates_through_hosts_evenly() -> None:
    cands = [cand(host(i)) for i in "abc"]
    policy = RoundRobin()
    firsts = Counter(policy.rank(cands)[0].host.id for _ in range(30))
    assert firsts == {"a": 10, "b": 10, "c": 10}


def test_returns_every_candidate_and_ignores_load() -> None:
    cands = [cand(host("a", load=9)), cand(host("b"))]
    ranked = RoundRobin().rank(cands)
    assert sorted(ids(ranked)) == ["a", "b"]
    assert ranked[0].host.id == "a"  # turn order, not load


def test_empty() -> None:
    assert RoundRobin().rank([]) == []
