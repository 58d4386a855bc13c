"""The agent over REAL llama.cpp (no mocks): greedy parity, chat, embed, cancellation, a dying backend.

Each test runs over both transports (threaded and asyncio) through `agent_factory`.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from olol.backends.llamacpp.backend import LlamaCppBackend
from olol.errors import BackendUnavailable, ModelNotFound
from tests.support.agent_fixtures import AgentFactory
from tests.support.llama_fixtures import BackgroundLlamaServer

pytestmark = pytest.mark.slow

GREEDY = {"temperature": 0, "seed": 42}
PROMPT = "Once upon a time"


async def _collect(stream: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c async for c in stream]


async def _llama(url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    async with aiohttp.ClientSession() as s:
        if body is None:
            async with s.get(url + path) as r:
                return await r.json()
        async with s.post(url + path, json=body) as r:
            return await r.json()


async def test_greedy_generate_through_the_agent_equals_llama_server(
    llama_server: BackgroundLlamaServer, agent_factory: AgentFactory
) -> None:
    agent = await agent_factory(LlamaCppBackend(url=llama_server.url, model_path=llama_server.model_path))
    chunks = await _collect(
        agent.client.generate(
            {"model": "tiny", "prompt": PROMPT, "raw": True, "options": {**GREEDY, "num_predict": 24}}
        )
    )
    ours = "".join(c["response"] for c in chunks)
    theirs = await _llama(llama_server.url, "/completion", {"prompt": PROMPT, "n_predict": 24, **GREEDY})
    assert ours == theirs["content"] and ours
    final = chunks[-1]
    assert final["done"] and final["done_reason"] == "length" and final["eval_count"] == 24
    assert final["prompt_eval_count"] == theirs["tokens_evaluated"]
    assert final["eval_duration"] > 0 and final["total_duration"] >= final["eval_duration"]


async def test_chat_and_embed_through_the_agent(
    llama_server: BackgroundLlamaServer, agent_factory: AgentFactory
) -> None:
    agent = await agent_factory(LlamaCppBackend(url=llama_server.url, model_path=llama_server.model_path))
    messages = [{"role": "user", "content": "Hello"}]
    chunks = await _collect(
        agent.client.chat({"model": "tiny", "messages": messages, "options": {**GREEDY, "num_predict": 12}})
    )
    ours = "".join(c["message"]["content"] for c in chunks)
    theirs = await _llama(llama_server.url, "/v1/chat/completions", {"messages": messages, "max_tokens": 12, **GREEDY})
    assert ours == theirs["choices"][0]["message"]["content"]
    assert chunks[-1]["done"] and chunks[-1]["eval_count"] == 12
    out = await agent.client.embed({"model": "tiny", "input": ["first", "second"]})
    assert len(out["embeddings"]) == 2 and len(out["embeddings"][0]) == 128
    with pytest.raises(ModelNotFound):
        await _collect(agent.client.generate({"model": "other", "prompt": "x"}))
    assert [m["name"] for m in await agent.client.list_models()] == ["tiny:latest"]


async def test_cancelling_through_the_agent_stops_llama_server(
    llama_server: BackgroundLlamaServer, agent_factory: AgentFactory
) -> None:
    agent = await agent_factory(LlamaCppBackend(url=llama_server.url, model_path=llama_server.model_path))
    before = await _llama(llama_server.url, "/slots")
    assert all(not s["is_processing"] for s in before)
    stream = agent.client.generate(
        {"model": "tiny", "prompt": PROMPT, "raw": True, "options": {**GREEDY, "num_predict": 400}}
    )
    got = 0
    async for _ in stream:
        got += 1
        if got == 3:
            break
    await stream.aclose()  # type: ignore[attr-defined]
    # The slot must go idle well before 400 tokens could have been generated.
    for _ in range(200):
        slots = await _llama(llama_server.url, "/slots")
        if all(not s["is_processing"] for s in slots):
            break
        await asyncio.sleep(0.02)
    assert all(not s["is_processing"] for s in slots)
    decoded = max(s.get("next_token", [{}])[0].get("n_decoded", 0) for s in slots)
    assert decoded < 400


async def test_llama_server_dying_mid_stream_is_a_clean_error(
    tiny_model: Path, llama_bins: object, agent_factory: AgentFactory
) -> None:
    backend = LlamaCppBackend(model_path=tiny_model, ctx_size=256, threads=1, parallel=1, embeddings=False)
    agent = await agent_factory(backend)
    assert backend.process is not None and backend.process.pid
    got: list[dict[str, Any]] = []
    with pytest.raises(BackendUnavailable, match="llama-server"):
        async for chunk in agent.client.generate(
            {"model": "tiny", "prompt": PROMPT, "raw": True, "options": {**GREEDY, "num_predict": 2000}}
        ):
            got.append(chunk)
            if len(got) == 2:
                os.kill(backend.process.pid, signal.SIGKILL)
    assert len(got) >= 2
    # The supervisor brings llama-server back; the agent serves the next request.
    for _ in range(1000):  # the supervisor notices the death, then restarts
        if backend.process.restarts >= 1:
            break
        await asyncio.sleep(0.02)
    await backend.process.wait_ready(120)
    again = await _collect(
        agent.client.generate({"model": "tiny", "prompt": PROMPT, "raw": True, "options": {**GREEDY, "num_predict": 4}})
    )
    assert again[-1]["done"] and again[-1]["eval_count"] == 4
