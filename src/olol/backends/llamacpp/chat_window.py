"""Fitting a chat into a llama.cpp slot's context the way Ollama does (its `chatPrompt`).

llama-server refuses a prompt longer than its slot's context ("request exceeds the
available context size"); Ollama instead drops the oldest messages until the rendered
prompt fits, always keeping every system message and the latest message, and never
separating a tool result from the assistant tool call it answers. The count is the real
one: the prompt rendered with the model's template, tokenized by the model.

Ollama scans from the front, rendering once per candidate; the rendered size only shrinks
as the first kept message moves on, so a binary search finds the same first message with
log2(n) renders instead of n.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

__all__ = ["fit_chat", "surely_fits"]

Message = dict[str, Any]
Count = Callable[[list[Message]], Awaitable[int]]

# A generous bound on what a chat template adds per message (role markers, separators) and in all.
_PER_MESSAGE = 64
_FIXED = 256


def surely_fits(messages: Sequence[Message], tools: Any, limit: int) -> bool:
    """True when the chat cannot need trimming: no token is shorter than a byte of UTF-8, so its bytes
    (plus template overhead) bound its tokens. Saves rendering and tokenizing ordinary short chats."""
    size = sum(len(str(m.get("content") or "").encode()) + _PER_MESSAGE for m in messages) + _FIXED
    if tools:
        size += len(json.dumps(tools).encode())
    if any(m.get("tool_calls") or m.get("images") for m in messages):
        return False
    return size < limit


def _tool_block_start(messages: Sequence[Message], i: int) -> int:
    """A tool result at `i` is kept with the run of tool results and the assistant call before it."""
    if i <= 0 or i >= len(messages) or messages[i].get("role") != "tool":
        return i
    start = i
    while start > 0 and messages[start - 1].get("role") == "tool":
        start -= 1
    call = start - 1
    if call >= 0 and messages[call].get("role") == "assistant" and messages[call].get("tool_calls"):
        return call
    return i


def _window(messages: Sequence[Message], start: int) -> list[Message]:
    """System messages from the dropped part, then everything from `start` on."""
    return [m for m in messages[:start] if m.get("role") == "system"] + list(messages[start:])


async def fit_chat(messages: Sequence[Message], limit: int, count: Count) -> tuple[list[Message], int]:
    """The messages to send (system messages and the newest that fit under `limit` tokens), and how many were
    left out. The latest message is always sent, even alone over the limit (llama.cpp then says so)."""
    if not messages:
        return [], 0
    last = len(messages) - 1

    async def fits(i: int) -> bool:
        return await count(_window(messages, _tool_block_start(messages, i))) < limit

    if await fits(0):
        return list(messages), 0
    lo, hi = 1, last  # the answer lies in (0, last]; `last` is taken even if it does not fit
    while lo < hi:
        mid = (lo + hi) // 2
        if await fits(mid):
            hi = mid
        else:
            lo = mid + 1
    start = _tool_block_start(messages, lo)
    kept = _window(messages, start)
    return kept, len(messages) - len(kept)
