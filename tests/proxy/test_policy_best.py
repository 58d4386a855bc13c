"""`Policy.best` is the router's one-pass shortcut: it must pick exactly what `rank` would.

For every policy and any field of hosts (loads, capacities, tiers, weights, loaded or not, measured
or not, exact or fallback), over several calls so the tie-breaking turn advances: the first
candidate of `rank` with a free slot, or None when every host is saturated.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from olol.cluster import LatencyBook
from olol.proxy.policies import Adaptive, Candidate, LeastConnections, Policy, RoundRobin
from tests.proxy.fakes import cand, host

M = "llama3:latest"

_host = st.fixed_dictionaries({
    "load": st.integers(0, 4),
    "parallel": st.integers(1, 3),
    "tier": st.integers(0, 1),
    "weight": st.sampled_from([0.5, 1.0, 2.0]),
    "loaded": st.booleans(),
    "exact": st.booleans(),
    "measured": st.sampled_from([None, (0.1, 10.0), (0.1, 100.0), (0.5, 10.0)]),
})


def _field(specs: list[dict[str, object]], book: LatencyBook) -> list[Candidate]:
    out = []
    for i, spec in enumerate(specs):
        host_id = f"h{(i * 7) % len(specs)}-{i}"  # ids not in input order, so the sort matters
        h = host(host_id, [M], load=int(spec["load"]), parallel=int(spec["parallel"]),  # type: ignore[call-overload]
                 tier=int(spec["tier"]), weight=float(spec["weight"]),  # type: ignore[arg-type]
                 loaded=[M] if spec["loaded"] else [])
        measured = spec["measured"]
        if isinstance(measured, tuple):
            book.record_ttft(host_id, M, measured[0])
            book.record_generation(host_id, M, 100, 100 / measured[1])
        out.append(cand(h, M, exact=bool(spec["exact"])))
    return out


def _agree(make: Callable[[LatencyBook], Policy], specs: list[dict[str, object]]) -> None:
    book = LatencyBook()
    field = _field(specs, book)
    ranking, picking = make(book), make(book)
    for _ in range(4):  # the turn advances on each call, in both
        expected = next((c for c in ranking.rank(field) if not c.host.saturated), None)
        assert picking.best(field) is expected


@settings(max_examples=150, deadline=None)
@given(st.lists(_host, min_size=0, max_size=6))
def test_adaptive_best_is_the_first_free_host_of_its_ranking(specs: list[dict[str, object]]) -> None:
    _agree(Adaptive, specs)


@settings(max_examples=100, deadline=None)
@given(st.lists(_host, min_size=0, max_size=6))
def test_least_connections_best_is_the_first_free_host_of_its_ranking(specs: list[dict[str, object]]) -> None:
    _agree(lambda _book: LeastConnections(), specs)


@settings(max_examples=100, deadline=None)
@given(st.lists(_host, min_size=0, max_size=6))
def test_round_robin_best_is_the_first_free_host_of_its_ranking(specs: list[dict[str, object]]) -> None:
    _agree(lambda _book: RoundRobin(), specs)


def test_all_saturated_is_none_and_idle_ties_still_rotate() -> None:
    full = [cand(host(f"h{i}", [M], load=1, parallel=1)) for i in range(3)]
    assert Adaptive(LatencyBook()).best(full) is None
    idle = [cand(host(f"h{i}", [M])) for i in range(3)]
    policy = Adaptive(LatencyBook())
    assert [policy.best(idle).host.id for _ in range(3)] == ["h0", "h1", "h2"]  # type: ignore[union-attr]
