from __future__ import annotations

from olol.proxy.affinity import SessionAffinity
from tests.proxy.fakes import host


def test_first_sight_then_hits() -> None:
    hosts = [host("a"), host("b")]
    aff = SessionAffinity()
    first, outcome = aff.route("k", hosts)
    assert outcome == "new" and first is not None
    for _ in range(3):
        again, outcome = aff.route("k", hosts)
        assert again is first and outcome == "hit"
    assert aff.hits == 3 and aff.new == 1 and aff.hit_rate == 1.0


def test_overloaded_home_moves_the_key_and_the_pin() -> None:
    a, b = host("a", parallel=8), host("b", parallel=8)
    aff = SessionAffinity(1.25)
    home, _ = aff.route("k", [a, b])
    assert home is not None
    other = b if home is a else a
    home.in_flight = 4  # bound = ceil(1.25 * 5/2) = 4: a 5th request would exceed it
    moved, outcome = aff.route("k", [a, b])
    assert moved is other and outcome == "moved"
    assert aff.pinned("k") == other.id
    assert aff.hit_rate == 0.0


def test_saturated_home_is_not_used() -> None:
    a, b = host("a", parallel=1), host("b", parallel=1)
    aff = SessionAffinity(load_factor=10)
    home, _ = aff.route("k", [a, b])
    assert home is not None
    home.in_flight = 1
    moved, _ = aff.route("k", [a, b])
    assert moved is not home


def test_full_when_no_host_fits() -> None:
    a = host("a", parallel=1, load=1)
    assert SessionAffinity().route("k", [a]) == (None, "full")


def test_pin_survives_a_new_host_joining() -> None:
    a, b = host("a"), host("b")
    aff = SessionAffinity()
    keys = [f"k{i}" for i in range(50)]
    homes = {k: aff.route(k, [a, b])[0] for k in keys}
    c = host("c")
    assert all(aff.route(k, [a, b, c])[0] is homes[k] for k in keys)


def test_purge_host_forgets_its_conversations() -> None:
    a, b = host("a"), host("b")
    aff = SessionAffinity()
    for i in range(20):
        aff.route(f"k{i}", [a, b])
    on_a = sum(1 for i in range(20) if aff.pinned(f"k{i}") == "a")
    assert aff.purge_host("a") == on_a
    assert all(aff.pinned(f"k{i}") != "a" for i in range(20))


def test_pins_are_bounded() -> None:
    aff = SessionAffinity(max_sessions=3)
    hosts = [host("a")]
    for i in range(10):
        aff.route(f"k{i}", hosts)
    assert aff.to_json()["sessions"] == 3
    assert aff.pinned("k9") == "a" and aff.pinned("k0") is None
