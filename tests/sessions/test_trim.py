"""The trimming policy and the context budget, as plain functions (with a property test)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from olol.sessions.model import MESSAGE_OVERHEAD, ChatHistory, HistoryMessage
from olol.sessions.trim import DropOldestTurns, prompt_budget, requested_context


def msg(role: str, tokens: int, content: str = "") -> HistoryMessage:
    return HistoryMessage(role=role, content=content or f"{role}{tokens}", tokens=tokens)


def conversation(turn_sizes: list[int], system: int | None = 10) -> list[HistoryMessage]:
    out = [msg("system", system, "sys")] if system is not None else []
    for i, size in enumerate(turn_sizes):
        out += [msg("user", size, f"q{i}"), msg("assistant", size, f"a{i}")]
    return out


def test_everything_fits_nothing_is_cut() -> None:
    history = conversation([5, 5])
    window = DropOldestTurns().fit(history, msg("user", 5), budget=1000)
    assert window.messages == history and window.trimmed == 0
    assert window.tokens == sum(m.tokens for m in history) + 5 + 6 * MESSAGE_OVERHEAD


def test_oldest_turns_go_first_system_stays() -> None:
    history = conversation([20, 20, 20])  # each turn costs 2 * (20 + 4) = 48; system 14; new message 9
    window = DropOldestTurns().fit(history, msg("user", 5), budget=14 + 9 + 48 * 2)
    assert [m.content for m in window.messages] == ["sys", "q1", "a1", "q2", "a2"]
    assert window.trimmed == 2 and window.tokens <= window.budget


def test_tool_results_stay_with_their_turn() -> None:
    history = [
        msg("user", 30, "q0"),
        msg("assistant", 1, "call"),
        msg("tool", 1, "result"),
        msg("assistant", 1, "a0"),
        msg("user", 1, "q1"),
        msg("assistant", 1, "a1"),
    ]
    assert [len(t) for t in ChatHistory(history).turns()] == [4, 2]
    window = DropOldestTurns().fit(history, msg("user", 1), budget=20)
    assert [m.content for m in window.messages] == ["q1", "a1"] and window.trimmed == 4


def test_budget_leaves_room_for_the_reply() -> None:
    assert prompt_budget(4096, {}) == 3072
    assert prompt_budget(4096, {"num_predict": 100}) == 3996
    assert prompt_budget(4096, {"num_predict": -1}) == 3072  # -1: "until the window is full"
    assert prompt_budget(100, {"num_predict": 5000}) == 75
    assert requested_context({"num_ctx": 2048}) == 2048
    assert requested_context({"num_ctx": True}) is None and requested_context({}) is None


@given(
    turns=st.lists(st.integers(min_value=0, max_value=200), max_size=30),
    system=st.one_of(st.none(), st.integers(min_value=0, max_value=300)),
    incoming=st.integers(min_value=0, max_value=300),
    budget=st.integers(min_value=1, max_value=5000),
)
def test_window_is_system_plus_a_suffix_of_whole_turns_that_fits(
    turns: list[int], system: int | None, incoming: int, budget: int
) -> None:
    history = conversation(turns, system)
    window = DropOldestTurns().fit(history, msg("user", incoming), budget)
    rest = [m for m in window.messages if m.role != "system"]
    body = [m for m in history if m.role != "system"]
    assert rest == body[len(body) - len(rest) :]  # a suffix ...
    assert not rest or rest[0].role == "user"  # ... of whole turns
    assert [m for m in window.messages if m.role == "system"] == [m for m in history if m.role == "system"]
    assert window.trimmed == len(history) - len(window.messages)
    assert window.tokens == sum(m.cost for m in window.messages) + incoming + MESSAGE_OVERHEAD
    # It fits, unless even system + new message alone do not (then nothing else is sent).
    assert window.tokens <= budget or not rest
    # And it is the longest suffix that fits: one more turn would not.
    if window.trimmed and rest != body:
        dropped_last = body[len(body) - len(rest) - 2 : len(body) - len(rest)]
        assert window.tokens + sum(m.cost for m in dropped_last) > budget
