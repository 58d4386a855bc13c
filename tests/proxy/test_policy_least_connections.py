from __future__ import annotations

from collections import Counter

from olol.proxy.policies import LeastConnections
from tests.proxy.fakes import cand, host, ids


def test_fewest_outstanding_first() -> None:
    cands = [cand(host("a", load=3)), cand(host("b", load=1)), cand(host("c", load=2))]
    assert ids(LeastConnections().rank(cands)) == ["b", "c", "a"]


def test_ties_rotate() -> None:
    cands = [cand(host(i)) for i in "abc"]
    policy = LeastConnections()
    firsts = Counter(policy.rank(cands)[0].host.id for _ in range(30))
    assert firsts == {"a": 10, "b": 10, "c": 10}


def test_returns_every_candidate() -> None:
    cands = [cand(host(i, load=n)) for n, i in enumerate("abcd")]
    assert sorted(ids(LeastConnections().rank(cands))) == list("abcd")
