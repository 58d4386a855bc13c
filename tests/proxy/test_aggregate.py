"""`stream: false` replies folded from chunks, as Ollama builds them."""

from __future__ import annotations

from collections.abc import AsyncIterator

from olol.cluster.backend import JSON
from olol.proxy.aggregate import collect_chat, collect_generate


async def feed(*chunks: JSON) -> AsyncIterator[JSON]:
    for c in chunks:
        yield c


async def test_generate_concatenates_response_and_keeps_final_stats() -> None:
    out = await collect_generate(feed(
        {"model": "m", "response": "a", "thinking": "x", "done": False},
        {"model": "m", "response": "b", "done": False},
        {"model": "m", "response": "", "done": True, "eval_count": 2, "context": [1, 2]},
    ))
    assert out == {"model": "m", "response": "ab", "thinking": "x", "done": True, "eval_count": 2, "context": [1, 2]}


async def test_chat_concatenates_content_and_collects_tool_calls() -> None:
    call = {"function": {"name": "f", "arguments": {"x": 1}}}
    out = await collect_chat(feed(
        {"model": "m", "message": {"role": "assistant", "content": "he", "thinking": "t"}, "done": False},
        {"model": "m", "message": {"role": "assistant", "content": "llo", "tool_calls": [call]}, "done": False},
        {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop"},
    ))
    assert out["message"] == {"role": "assistant", "content": "hello", "thinking": "t", "tool_calls": [call]}
    assert out["done"] is True and out["done_reason"] == "stop"
