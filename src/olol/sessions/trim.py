"""Fitting a conversation into a model's context window.

The stored history is never cut: only what is *sent* is. A turn whose prompt
would not fit (history + new message + room for the reply) keeps every system
message and drops the oldest whole turns until it does; the reply says how
many messages were left out. Without this the backend would either refuse the
request (llama.cpp: "exceeds the available context size") or silently cut the
prompt from the front (Ollama), losing the system prompt first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from olol.sessions.model import ChatHistory, HistoryMessage

__all__ = ["DEFAULT_CONTEXT", "DropOldestTurns", "TrimPolicy", "Window", "prompt_budget", "requested_context"]

# Ollama's default num_ctx: what a host loads a model with when nobody asked for more.
DEFAULT_CONTEXT = 4096


@dataclass(frozen=True)
class Window:
    messages: list[HistoryMessage]  # the history to send, in order (without the new message)
    trimmed: int  # history messages left out
    tokens: int  # estimated prompt size, the new message included
    budget: int  # what it had to fit in


class TrimPolicy(Protocol):
    def fit(self, history: Sequence[HistoryMessage], incoming: HistoryMessage, budget: int) -> Window: ...


class DropOldestTurns:
    """Keep system messages and the newest turns that fit; the new message is always sent."""

    def fit(self, history: Sequence[HistoryMessage], incoming: HistoryMessage, budget: int) -> Window:
        chat = history if isinstance(history, ChatHistory) else ChatHistory(history)
        system = chat.system
        turns = chat.turns()
        fixed = sum(m.cost for m in system) + incoming.cost
        costs = [sum(m.cost for m in turn) for turn in turns]
        total = fixed + sum(costs)
        first = 0
        while first < len(turns) and total > budget:
            total -= costs[first]
            first += 1
        kept = {id(m) for turn in turns[first:] for m in turn}
        # Original order: a system message seeded mid-history stays where it was.
        messages = [m for m in chat if m.role == "system" or id(m) in kept]
        return Window(messages, len(chat) - len(messages), total, budget)


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value) if value > 0 else None


def requested_context(options: dict[str, Any]) -> int | None:
    """`options.num_ctx` when the client set one: the host will load the model with exactly that."""
    return _positive_int(options.get("num_ctx"))


def prompt_budget(context_length: int, options: dict[str, Any]) -> int:
    """Tokens the prompt may take: the window minus room for the reply.

    The reply gets `num_predict` when set, else a quarter of the window: enough
    for an ordinary answer without giving up most of the history for it.
    """
    predict = _positive_int(options.get("num_predict"))
    reserve = predict if predict is not None and predict < context_length else context_length // 4
    return max(1, context_length - reserve)
