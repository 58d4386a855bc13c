"""The prefix index: longest cached prefix per host, LRU eviction within each host's budget.

The spec is a brute-force model (`Model`): each host keeps the whole-block prefixes of the
texts it was sent, least recently sent first, and drops the oldest while the distinct
prefixes it holds exceed its budget. Both implementations must match it, and each other.
"""

from __future__ import annotations

from collections import OrderedDict
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fast.conftest import both, needs_compiled

B = 64


class Model:
    def __init__(self) -> None:
        self.budget: dict[str, int] = {}
        self.texts: dict[str, OrderedDict[bytes, None]] = {}

    def set_host(self, host: str, budget: int) -> None:
        self.budget[host] = max(0, budget)
        self.texts.setdefault(host, OrderedDict())
        self._evict(host)

    def hosts(self) -> list[str]:
        return list(self.budget)

    def remove_host(self, host: str) -> None:
        self.budget.pop(host, None)
        self.texts.pop(host, None)

    def used(self, host: str) -> int:
        prefixes = {t[:k] for t in self.texts.get(host, {}) for k in range(B, len(t) + 1, B)}
        return len(prefixes) * B

    def insert(self, host: str, text: bytes) -> int:
        cut = text[: min(len(text) // B, self.budget[host] // B) * B]
        if not cut:
            return 0
        texts = self.texts[host]
        texts[cut] = None
        texts.move_to_end(cut)
        self._evict(host)
        return len(cut)

    def _evict(self, host: str) -> None:
        texts = self.texts[host]
        while texts and self.used(host) > self.budget[host]:
            texts.popitem(last=False)

    def match(self, text: bytes) -> dict[str, int]:
        out = {}
        for host, texts in self.texts.items():
            best = max((_common_blocks(text, t) for t in texts), default=0)
            if best:
                out[host] = best
        return out


def _common_blocks(a: bytes, b: bytes) -> int:
    n = 0
    while n + B <= min(len(a), len(b)) and a[n:n + B] == b[n:n + B]:
        n += B
    return n


# Texts built from a few shared blocks, so prefixes overlap the way system prompts and chat histories do.
_BLOCKS = [bytes([i]) * B for i in range(4)]
texts = st.lists(st.sampled_from(_BLOCKS), min_size=0, max_size=8).map(b"".join).flatmap(
    lambda t: st.binary(max_size=B - 1).map(lambda tail: t + tail))
hosts = st.sampled_from(["a", "b", "c"])
ops = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), hosts, texts),
        st.tuples(st.just("set_host"), hosts, st.integers(0, 12).map(lambda n: n * B + 7)),
        st.tuples(st.just("remove_host"), hosts, st.none()),
    ),
    max_size=30,
)


def _apply(index: object, op: str, host: str, arg: object) -> object:
    if op == "insert":
        if host not in index.hosts():  # type: ignore[attr-defined]
            index.set_host(host, 6 * B)  # type: ignore[attr-defined]
        return index.insert(host, arg)  # type: ignore[attr-defined]
    if op == "set_host":
        return index.set_host(host, arg)  # type: ignore[attr-defined]
    return index.remove_host(host)  # type: ignore[attr-defined]


@settings(max_examples=150, deadline=None)
@given(ops=ops, probe=texts)
def test_matches_the_brute_force_model(prefix: ModuleType, ops: list[tuple[str, str, object]], probe: bytes) -> None:
    index, model = prefix.PrefixIndex(), Model()
    for op, host, arg in ops:
        assert _apply(index, op, host, arg) == _apply(model, op, host, arg)
        for h in index.hosts():
            assert index.used(h) == model.used(h) <= index.budget(h)
        assert index.match(probe) == model.match(probe)


@needs_compiled("prefix")
@settings(max_examples=150, deadline=None)
@given(ops=ops, probe=texts, raw=st.binary(max_size=5 * B))
def test_twin_and_compiled_agree(ops: list[tuple[str, str, object]], probe: bytes, raw: bytes) -> None:
    twin, fast = both("prefix")
    assert twin.block_hashes(raw) == fast.block_hashes(raw)
    a, b = twin.PrefixIndex(), fast.PrefixIndex()
    for op, host, arg in ops:
        assert _apply(a, op, host, arg) == _apply(b, op, host, arg)
        assert (a.nodes(), sorted(a.hosts())) == (b.nodes(), sorted(b.hosts()))
        for h in a.hosts():
            assert (a.used(h), a.entries(h)) == (b.used(h), b.entries(h))
    assert a.match(probe) == b.match(probe)


def test_a_chat_turn_matches_the_history_it_extends(prefix: ModuleType) -> None:
    index = prefix.PrefixIndex()
    index.set_host("a", 1 << 20)
    index.set_host("b", 1 << 20)
    history = b"system: you are a careful assistant. " * 40 + b"user: hello"
    index.insert("a", history)
    index.insert("b", b"something else entirely " * 20)
    follow_up = history + b" assistant: hi! user: and then?"
    assert index.match(follow_up) == {"a": len(history) // B * B}


def test_least_recently_sent_text_goes_first(prefix: ModuleType) -> None:
    index = prefix.PrefixIndex()
    index.set_host("a", 4 * B)
    one, two, three = (bytes([i]) * (2 * B) for i in (1, 2, 3))
    index.insert("a", one)
    index.insert("a", two)
    index.insert("a", one)  # sent again: now the most recent
    index.insert("a", three)  # over budget: `two` goes, not `one`
    assert index.match(one) == {"a": 2 * B}
    assert index.match(two) == {}
    assert index.used("a") == 4 * B


def test_a_text_longer_than_the_budget_keeps_its_head(prefix: ModuleType) -> None:
    index = prefix.PrefixIndex()
    index.set_host("a", 3 * B + 5)
    text = bytes(range(256)) * 4
    assert index.insert("a", text) == 3 * B
    assert index.match(text) == {"a": 3 * B}


def test_shrinking_a_budget_evicts_and_removing_a_host_frees_its_nodes(prefix: ModuleType) -> None:
    index = prefix.PrefixIndex()
    index.set_host("a", 100 * B)
    index.set_host("b", 100 * B)
    shared = bytes(range(200)) * 2
    index.insert("a", shared)
    index.insert("b", shared[: 2 * B])
    index.set_host("a", 0)
    assert index.used("a") == 0 and index.entries("a") == 0
    assert index.match(shared) == {"b": 2 * B}
    index.remove_host("b")
    assert index.nodes() == 0 and index.match(shared) == {}


def test_at_most_64_hosts(prefix: ModuleType) -> None:
    index = prefix.PrefixIndex()
    for i in range(prefix.MAX_HOSTS):
        index.set_host(f"h{i}", B)
    with pytest.raises(ValueError):
        index.set_host("one-too-many", B)
    index.remove_host("h3")
    index.set_host("one-too-many", B)  # a freed slot is reused
    index.insert("one-too-many", b"x" * B)
    assert index.match(b"x" * B) == {"one-too-many": B}
