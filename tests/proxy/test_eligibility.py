"""Model-aware candidates with quantization fallback, with a stub matcher and with the real facade."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from olol.cluster.eligibility import candidates
from olol.cluster.quant_matcher import QuantMatcher
from tests.proxy.fakes import host

Q4 = "llama3:8b-q4_0"
Q8 = "llama3:8b-q8_0"


def stub(requested: str, available: Sequence[str]) -> str | None:
    if requested in available:
        return requested
    return Q8 if requested == Q4 and Q8 in available else None


def pairs(cands: list) -> list[tuple[str, str, bool]]:  # type: ignore[type-arg]
    return [(c.host.id, c.model, c.exact) for c in cands]


def test_only_hosts_with_the_model() -> None:
    hosts = [host("a", ["llama3"]), host("b", ["phi3"])]
    assert pairs(candidates("llama3:latest", hosts, None)) == [("a", "llama3:latest", True)]


def test_no_host_no_candidates() -> None:
    assert candidates("nope", [host("a")], QuantMatcher(stub)) == []


def test_fallback_when_no_host_has_the_exact_quant() -> None:
    hosts = [host("a", [Q8]), host("b", ["phi3"])]
    assert pairs(candidates(Q4, hosts, QuantMatcher(stub))) == [("a", Q8, False)]


def test_no_fallback_when_disabled() -> None:
    assert candidates(Q4, [host("a", [Q8])], None) == []


def test_loaded_exact_model_excludes_fallback() -> None:
    hosts = [host("a", [Q4], loaded=[Q4]), host("b", [Q8], loaded=[Q8])]
    assert pairs(candidates(Q4, hosts, QuantMatcher(stub))) == [("a", Q4, True)]


def test_loaded_fallback_joins_when_exact_is_cold() -> None:
    hosts = [host("a", [Q4]), host("b", [Q8], loaded=[Q8]), host("c", [Q8])]
    assert pairs(candidates(Q4, hosts, QuantMatcher(stub))) == [("a", Q4, True), ("b", Q8, False)]


def test_matcher_must_pick_from_what_was_offered() -> None:
    assert QuantMatcher(lambda _r, _a: "elsewhere").match(Q4, [Q8]) is None


def test_real_facade_serves_q4_request_from_q8() -> None:
    pytest.importorskip("olol._fast.quant")
    matcher = QuantMatcher()
    assert matcher.match(Q4, [Q8, "phi3:latest"]) == Q8
    assert matcher.match(Q8, [Q4]) is None  # never a lower quality than asked for
