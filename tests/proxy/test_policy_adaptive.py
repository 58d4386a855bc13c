from __future__ import annotations

from olol.cluster import LatencyBook
from olol.proxy.policies import Adaptive, make_policy
from tests.proxy.fakes import cand, host, ids

M = "llama3:latest"


def measured(book: LatencyBook, host_id: str, ttft: float, tps: float) -> None:
    book.record_ttft(host_id, M, ttft)
    book.record_generation(host_id, M, tokens=100, seconds=100 / tps)


def test_prefers_host_with_model_loaded() -> None:
    cands = [cand(host("a", [M])), cand(host("b", [M], loaded=[M]))]
    assert ids(Adaptive(LatencyBook()).rank(cands))[0] == "b"


def test_loaded_host_loses_when_deeply_queued() -> None:
    cold = cand(host("a", [M], parallel=1))
    busy = cand(host("b", [M], loaded=[M], parallel=1, load=30))
    assert ids(Adaptive(LatencyBook()).rank([cold, busy]))[0] == "a"


def test_faster_host_first_by_ewma() -> None:
    book = LatencyBook(alpha=1.0)
    measured(book, "slow", ttft=0.5, tps=10)
    measured(book, "fast", ttft=0.1, tps=100)
    cands = [cand(host("slow", [M], loaded=[M])), cand(host("fast", [M], loaded=[M]))]
    assert ids(Adaptive(book).rank(cands)) == ["fast", "slow"]


def test_load_is_normalised_by_parallel_capacity() -> None:
    # Same speed; a has 2 of 8 slots busy, b has 1 of 1: a is far less queued.
    cands = [cand(host("a", [M], loaded=[M], parallel=8, load=2)),
             cand(host("b", [M], loaded=[M], parallel=2, load=1))]
    assert ids(Adaptive(LatencyBook()).rank(cands))[0] == "a"


def test_fast_host_takes_more_work_until_its_queue_evens_the_cost() -> None:
    book = LatencyBook(alpha=1.0)
    measured(book, "slow", ttft=0.0, tps=50)  # 2 s a request
    measured(book, "fast", ttft=0.0, tps=100)  # 1 s a request
    fast = host("fast", [M], loaded=[M], parallel=8, load=0)
    slow = host("slow", [M], loaded=[M], parallel=8, load=0)
    policy = Adaptive(book)
    assert ids(policy.rank([cand(slow), cand(fast)]))[0] == "fast"  # 1 s x 1/8 < 2 s x 1/8
    fast.in_flight = 2  # 1 s x 3/8 > 2 s x 1/8
    assert ids(policy.rank([cand(slow), cand(fast)]))[0] == "slow"


def test_saturated_hosts_rank_last() -> None:
    full = host("full", [M], loaded=[M], parallel=1, load=1)
    cold = host("cold", [M], parallel=1)
    assert ids(Adaptive(LatencyBook()).rank([cand(full), cand(cold)])) == ["cold", "full"]


def test_weight_divides_cost() -> None:
    cands = [cand(host("a", [M], loaded=[M], load=1)), cand(host("b", [M], loaded=[M], load=2, weight=3))]
    assert ids(Adaptive(LatencyBook()).rank(cands))[0] == "b"


def test_lower_tier_first_until_it_is_full() -> None:
    primary = host("primary", [M], tier=0, parallel=2, load=1)
    spare = host("spare", [M], loaded=[M], tier=1, parallel=8)
    policy = Adaptive(LatencyBook())
    assert ids(policy.rank([cand(spare), cand(primary)]))[0] == "primary"
    primary.in_flight = 2  # full: overflow to the next tier
    assert ids(policy.rank([cand(spare), cand(primary)]))[0] == "spare"


def test_exact_model_preferred_over_equal_fallback() -> None:
    exact = cand(host("a", [M], loaded=[M]))
    fallback = cand(host("b", ["llama3:8b-q8_0"], loaded=["llama3:8b-q8_0"]), "llama3:8b-q8_0", exact=False)
    assert ids(Adaptive(LatencyBook()).rank([fallback, exact]))[0] == "a"


def test_identical_hosts_share_work() -> None:
    cands = [cand(host(i, [M])) for i in "abc"]
    policy = Adaptive(LatencyBook())
    assert {policy.rank(cands)[0].host.id for _ in range(3)} == {"a", "b", "c"}


def test_factory_builds_every_policy_by_name() -> None:
    book = LatencyBook()
    assert make_policy("adaptive", book).name == "adaptive"
    assert make_policy("least-connections", book).name == "least_connections"
    assert make_policy("least_conn", book).name == "least_connections"
    assert make_policy("ROUND_ROBIN", book).name == "round_robin"


def test_factory_rejects_unknown() -> None:
    import pytest

    with pytest.raises(ValueError, match="unknown balancer"):
        make_policy("random", LatencyBook())


def test_any_spelling_of_the_model_finds_its_stats() -> None:
    book = LatencyBook(alpha=1.0)
    measured(book, "fast", ttft=0.0, tps=1000)
    measured(book, "slow", ttft=0.0, tps=10)
    cands = [cand(host("slow", [M], loaded=[M]), "llama3"), cand(host("fast", [M], loaded=[M]), "LLAMA3")]
    assert ids(Adaptive(book).rank(cands))[0] == "fast"


def test_cold_penalty_is_learned_from_cold_starts() -> None:
    book = LatencyBook(alpha=1.0)
    measured(book, "warm", ttft=0.0, tps=50)  # 2 s a request
    measured(book, "cold", ttft=0.0, tps=50)
    warm = host("warm", [M], loaded=[M], parallel=1)
    cold = host("cold", [M], parallel=1)
    policy = Adaptive(book)
    assert ids(policy.rank([cand(cold), cand(warm)]))[0] == "warm"  # assumed 5 s load
    book.record_cold_load(M, 0.01)  # loads turn out to be nearly free
    warm.in_flight = 0
    warm.reported_in_flight = 0
    cold_host_faster = host("cold2", [M], parallel=2)
    measured(book, "cold2", ttft=0.0, tps=100)
    assert ids(policy.rank([cand(cold_host_faster), cand(warm)]))[0] == "cold2"
