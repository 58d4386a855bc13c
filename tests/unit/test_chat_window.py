"""Ollama's chat truncation (server/prompt.go chatPrompt), with a fake token count."""

from __future__ import annotations

from typing import Any

from olol.backends.llamacpp.chat_window import fit_chat, surely_fits
from olol.wire import convert


def msg(role: str, content: str, **extra: Any) -> dict[str, Any]:
    return {"role": role, "content": content, **extra}


async def words(window: list[dict[str, Any]]) -> int:
    return sum(len(str(m["content"]).split()) + 1 for m in window)


async def test_a_chat_that_fits_is_sent_whole() -> None:
    chat = [msg("system", "be brief"), msg("user", "hi")]
    assert await fit_chat(chat, 100, words) == (chat, 0)


async def test_oldest_dropped_system_and_latest_kept() -> None:
    chat = [msg("system", "be brief")] + [msg("user" if i % 2 == 0 else "assistant", f"w{i} " * 9) for i in range(6)]
    kept, trimmed = await fit_chat(chat, 35, words)  # system 3 + each message 10: room for the system + 3
    assert kept == [chat[0], *chat[-3:]]
    assert trimmed == 3


async def test_the_latest_message_is_sent_even_alone_over_the_limit() -> None:
    chat = [msg("user", "old"), msg("user", "x " * 50)]
    kept, trimmed = await fit_chat(chat, 10, words)
    assert kept == [chat[-1]] and trimmed == 1


async def test_a_tool_result_keeps_the_call_it_answers() -> None:
    call = msg("assistant", "", tool_calls=[{"function": {"name": "f", "arguments": {}}}])
    chat = [msg("user", "a " * 20), msg("user", "b " * 20), call, msg("tool", "42"), msg("tool", "43")]
    kept, trimmed = await fit_chat(chat, 6, words)
    assert kept == chat[2:] and trimmed == 2


def test_surely_fits_is_a_bound_not_a_guess() -> None:
    assert surely_fits([msg("user", "hi")], None, 2048)
    assert not surely_fits([msg("user", "é" * 1000)], None, 2048)  # 2000 bytes: might be 2000 tokens
    assert not surely_fits([msg("user", "hi", images=["..."])], None, 2048)


def test_trimmed_count_crosses_the_agent_wire() -> None:
    final = {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
             "olol": {"trimmed": 3}}  # fmt: skip
    assert convert.chat_chunk_from_pb(convert.chat_chunk_to_pb(final))["olol"] == {"trimmed": 3}
    del final["olol"]
    assert "olol" not in convert.chat_chunk_from_pb(convert.chat_chunk_to_pb(final))
