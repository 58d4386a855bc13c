"""Context overflow: the system prompt stays, the oldest whole turns go, and the reply says so."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.proxy.helpers import proxy_over
from tests.sessions.helpers import chats_seen, create, get, say, transcript
from tests.support.ollama_sim import ModelSpec, OllamaSim

SYSTEM = "Answer in one line."


def _assert_window(seen: list[dict[str, Any]], history: list[dict[str, Any]], question: str) -> int:
    """`seen` is the system prompt, a suffix of whole turns of `history`, then the question; returns what was cut."""
    assert seen[0] == {"role": "system", "content": SYSTEM}
    assert seen[-1] == {"role": "user", "content": question}
    kept = seen[1:-1]
    turns = history[1:]
    assert kept == turns[len(turns) - len(kept) :]
    assert not kept or kept[0]["role"] == "user"  # never half a turn
    return len(turns) - len(kept)


async def test_overflow_drops_oldest_turns_and_keeps_the_system_prompt(ollama_sim: OllamaSim) -> None:
    # 16-token replies; a 120-token window with 16 reserved for the reply holds about four turns.
    options = {"num_ctx": 120, "num_predict": 16}
    trimmed: list[int] = []
    async with proxy_over(ollama_sim) as proxy, aiohttp.ClientSession() as http:
        session = await create(http, proxy.url, system=SYSTEM, options=options)
        for i in range(10):
            before = transcript(await get(http, proxy.url, session["id"]))
            lines, headers = await say(http, proxy.url, session["id"], f"question number {i}")
            final = lines[-1]
            cut = _assert_window(chats_seen(ollama_sim)[-1], before, f"question number {i}")
            assert final["olol"]["trimmed"] == cut == int(headers["X-OLOL-Trimmed"])
            assert final["olol"]["context_length"] == 120
            # What was sent fits the window with room for the reply (the sim counts a word a token).
            assert final["prompt_eval_count"] + options["num_predict"] <= 120
            trimmed.append(cut)
        stored = await get(http, proxy.url, session["id"])
    assert trimmed[0] == 0 and trimmed[-1] > 0 and trimmed == sorted(trimmed)
    # Trimming limits what is sent, never what is kept.
    assert stored["message_count"] == 21 and len(stored["messages"]) == 21


async def test_context_length_comes_from_the_model_when_no_num_ctx(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    # A model trained for 64 tokens, loaded nowhere yet: /api/show's `<arch>.context_length` bounds the window.
    sim = await ollama_sim_factory(models=[ModelSpec("small:latest", context_length=64)], response_tokens=8)
    async with proxy_over(sim) as proxy, aiohttp.ClientSession() as http:
        session = await create(http, proxy.url, model="small", system=SYSTEM)
        finals = [(await say(http, proxy.url, session["id"], f"q {i}"))[0][-1] for i in range(6)]
    assert {f["olol"]["context_length"] for f in finals} == {64}
    assert finals[0]["olol"]["trimmed"] == 0 and finals[-1]["olol"]["trimmed"] > 0
    assert all(f["prompt_eval_count"] <= 64 - 64 // 4 for f in finals)


async def test_loaded_context_from_ps_wins_over_the_trained_one(ollama_sim: OllamaSim) -> None:
    async with proxy_over(ollama_sim) as proxy, aiohttp.ClientSession() as http:
        # Load it with a 256-token window (what /api/ps will report), as another client might have.
        async with http.post(
            ollama_sim.url + "/api/generate", json={"model": "llama3.2", "prompt": "", "options": {"num_ctx": 256}}
        ) as r:
            assert r.status == 200
        session = await create(http, proxy.url)
        lines, _ = await say(http, proxy.url, session["id"], "hello")
    assert lines[-1]["olol"]["context_length"] == 256


async def test_a_message_larger_than_the_window_is_still_sent_alone(ollama_sim: OllamaSim) -> None:
    async with proxy_over(ollama_sim) as proxy, aiohttp.ClientSession() as http:
        session = await create(http, proxy.url, system=SYSTEM, options={"num_ctx": 64})
        await say(http, proxy.url, session["id"], "short")
        lines, _ = await say(http, proxy.url, session["id"], "word " * 200)
    assert [m["role"] for m in chats_seen(ollama_sim)[-1]] == ["system", "user"]
    assert lines[-1]["olol"]["trimmed"] == 2
