"""`olol.sync.OllamaClient` and `olol.aio.AsyncOllamaClient` over an agent (gRPC) and over HTTP."""

from __future__ import annotations

import asyncio

from olol.aio import AsyncOllamaClient
from olol.backends.ollama.backend import OllamaBackend
from olol.sync import OllamaClient
from tests.support.agent_fixtures import start_agent
from tests.support.ollama_sim import OllamaSim


async def test_async_client_over_grpc_and_http(ollama_sim: OllamaSim) -> None:
    agent = await start_agent("asyncio", OllamaBackend(ollama_sim.url))
    try:
        for client in (AsyncOllamaClient(url=agent.target), AsyncOllamaClient(url=ollama_sim.url)):
            async with client:
                parts = [p async for p in client.generate("llama3.2", "hi", options={"num_predict": 4})]
                assert parts[-1].done and parts[-1].eval_count == 4 and parts[-1].total_duration > 0
                assert parts[-1].tokens_per_second > 0
                assert "".join(p.response for p in parts).strip()
                chat = [c async for c in client.chat("llama3.2", [{"role": "user", "content": "yo"}])]
                assert chat[-1].done and chat[0].message.role == "assistant"
                emb = await client.embed("nomic-embed-text", ["a", "b"])
                assert len(emb.embeddings) == 2
                assert "llama3.2:latest" in [m.name for m in await client.list()]
                pulled = [p.status async for p in client.pull("qwen2.5:0.5b")]
                assert pulled[-1] == "success"
    finally:
        await agent.client.close()
        await agent.stop()


async def test_sync_client(ollama_sim: OllamaSim) -> None:
    agent = await start_agent("asyncio", OllamaBackend(ollama_sim.url))

    def use() -> tuple[str, int]:
        with OllamaClient(url=agent.target) as client:
            parts = list(client.generate("llama3.2", "hi", options={"num_predict": 3}))
            return parts[-1].done_reason, len(client.embed("nomic-embed-text", "x").embeddings)

    try:
        assert await asyncio.get_running_loop().run_in_executor(None, use) == ("length", 1)
    finally:
        await agent.client.close()
        await agent.stop()
