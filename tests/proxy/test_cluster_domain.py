"""The shared cluster domain: names, hosts, leases, events, EWMA stats."""

from __future__ import annotations

import pytest

from olol.cluster import Cluster, Ewma, LatencyBook, normalize, same_model
from tests.proxy.fakes import host


@pytest.mark.parametrize(("name", "canonical"), [
    ("llama3", "llama3:latest"),
    ("llama3:latest", "llama3:latest"),
    ("Llama3:8B", "llama3:8b"),
    ("library/llama3", "llama3:latest"),
    ("registry.ollama.ai/library/llama3:8b", "llama3:8b"),
    ("me/mine", "me/mine:latest"),
    ("localhost:5000/me/mine", "localhost:5000/me/mine:latest"),
])
def test_normalize_matches_ollamas_equivalences(name: str, canonical: str) -> None:
    assert normalize(name) == canonical


def test_same_model() -> None:
    assert same_model("llama3", "llama3:latest")
    assert not same_model("llama3", "llama3:8b")


def test_lease_counts_load_once_and_notifies_capacity() -> None:
    h = host("a")
    c = Cluster([h])
    freed: list[str] = []
    c.on_capacity(lambda x: freed.append(x.id))
    lease = c.acquire(h, "llama3")
    assert h.in_flight == 1 and h.load == 1
    lease.release()
    lease.release()  # idempotent: a lease can never free two slots
    assert h.in_flight == 0
    assert freed == ["a"]


def test_load_is_the_larger_of_own_count_and_host_report() -> None:
    h = host("a", load=1, parallel=2)
    h.reported_in_flight = 3
    assert h.load == 3 and h.saturated


def test_mark_down_fires_once_and_mark_up_reports_capacity() -> None:
    h = host("a")
    c = Cluster([h])
    downs: list[str] = []
    ups: list[str] = []
    c.on_down(lambda x: downs.append(x.id))
    c.on_capacity(lambda x: ups.append(x.id))
    c.mark_down(h, "refused")
    c.mark_down(h, "refused again")
    assert downs == ["a"] and not h.healthy and h.last_error == "refused again"
    c.mark_up(h)
    assert h.healthy and ups == ["a"] and h.last_error == ""


def test_model_index_lists_healthy_hosts_per_model() -> None:
    a = host("a", ["llama3", "phi3"])
    b = host("b", ["llama3"])
    d = host("d", ["llama3"], healthy=False)
    c = Cluster([a, b, d])
    assert c.model_index() == {"llama3:latest": ["a", "b"], "phi3:latest": ["a"]}
    assert [h.id for h in c.hosts_with("llama3:latest")] == ["a", "b"]
    assert [h.id for h in c.hosts_with("llama3", healthy_only=False)] == ["a", "b", "d"]


def test_lease_first_byte_marks_model_loaded_and_records_ttft() -> None:
    h = host("a")
    c = Cluster([h])
    lease = c.acquire(h, "llama3")
    lease.first_byte()
    lease.finished(10, 0.5)
    assert h.is_loaded("llama3")
    stats = c.stats.get("a", "llama3:latest")
    assert stats is not None and stats.requests == 1
    assert stats.tokens_per_s.value == pytest.approx(20.0)


def test_ewma_follows_samples() -> None:
    e = Ewma(alpha=0.5)
    e.update(10)
    assert e.value == 10
    e.update(20)
    assert e.value == 15


def test_service_time_uses_own_stats_then_model_mean() -> None:
    book = LatencyBook(alpha=1.0)
    assert book.service_time("a", "m") is None
    book.record_ttft("a", "m", 0.5)
    book.record_generation("a", "m", tokens=100, seconds=1.0)  # 100 tok/s, 100 expected tokens
    assert book.service_time("a", "m") == pytest.approx(1.5)
    # An unmeasured host borrows the model's mean, so it is neither shunned nor flooded.
    assert book.service_time("b", "m") == pytest.approx(1.5)
    book.record_ttft("b", "m", 0.1)
    book.record_generation("b", "m", tokens=100, seconds=0.25)
    assert book.service_time("b", "m") == pytest.approx(0.35)


def test_expected_tokens_defaults_then_learns() -> None:
    book = LatencyBook(alpha=1.0)
    assert book.expected_tokens("m") == 128
    book.record_generation("a", "m", tokens=40, seconds=1)
    assert book.expected_tokens("m") == 40


def test_cold_start_load_time_is_recorded_only_for_cold_leases() -> None:
    h = host("a")
    c = Cluster([h])
    cold = c.acquire(h, "llama3")
    assert cold.cold
    cold.finished(10, 0.1, load_seconds=2.0)
    warm = c.acquire(h, "llama3")
    h.mark_loaded("llama3")
    warm2 = c.acquire(h, "llama3")
    assert not warm2.cold
    warm2.finished(10, 0.1, load_seconds=0.001)
    assert c.stats.cold_load("llama3:latest") == 2.0
    for lease in (cold, warm, warm2):
        lease.release()
