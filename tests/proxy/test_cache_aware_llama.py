"""Cache-aware routing on REAL llama.cpp: two hosts (tiny model) behind agents and the proxy.

A follow-up turn must go to the host that served its prefix, and that host's llama-server
must report the prefix as served from its KV cache (`timings.cache_n`, carried to the
client as Ollama's `prompt_eval_cached_count`, and counted in the proxy's hit rate).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from olol.backends.llamacpp.backend import LlamaCppBackend
from olol.backends.llamacpp.bins import LlamaBinaries
from tests.proxy.helpers import ndjson, proxy_over
from tests.support.agent_fixtures import RunningAgent, start_agent

pytestmark = pytest.mark.slow

OPTIONS: dict[str, Any] = {"temperature": 0, "seed": 1, "num_predict": 4}


@pytest.fixture
async def two_hosts(llama_bins: LlamaBinaries, tiny_model: Path) -> AsyncIterator[list[RunningAgent]]:
    agents: list[RunningAgent] = []
    try:
        for _ in range(2):
            backend = LlamaCppBackend(model_path=tiny_model, model_name="tiny", ctx_size=2048, threads=1,
                                      parallel=1, embeddings=False, server_bin=llama_bins.llama_server)
            agents.append(await start_agent("asyncio", backend))
        yield agents
    finally:
        for agent in agents:
            await agent.client.close()
            await agent.stop()


async def test_follow_up_goes_where_its_prefix_is_cached(two_hosts: list[RunningAgent]) -> None:
    # Past SHORT_PROMPT: a chat this long is followed by the prefix index, not by the conversation key.
    system = "You answer questions about the cluster. Be short and precise. " * 18
    async with proxy_over(*(a.target for a in two_hosts), balancer="cache_aware") as proxy, \
            aiohttp.ClientSession() as http:

        async def send(messages: list[dict[str, str]]) -> tuple[dict[str, Any], str, str]:
            async with http.post(proxy.url + "/api/chat",
                                 json={"model": "tiny", "messages": messages, "options": OPTIONS}) as r:
                lines = await ndjson(r)
                return lines[-1], r.headers["X-OLOL-Host"], r.headers["X-OLOL-Route"]

        messages = [{"role": "system", "content": system}, {"role": "user", "content": "How many hosts?"}]
        first, home, route = await send(messages)
        assert route == "cache_aware" and first["prompt_eval_cached_count"] == 0
        reply = "".join([first["message"]["content"]])
        messages += [{"role": "assistant", "content": reply or "Two."}, {"role": "user", "content": "And models?"}]
        second, host, route = await send(messages)
        assert host == home and route.startswith("cache:")
        # The host evaluated only what its cache lacked: the system prompt and first turn came from cache.
        assert second["prompt_eval_cached_count"] > first["prompt_eval_count"] // 2
        # An unrelated prompt goes to the other host, whose cache is empty (the most room).
        _, other, route = await send([{"role": "user", "content": "Something else entirely. " * 50}])
        assert other != home and route == "cache_aware"
        async with http.get(proxy.url + "/api/status") as r:
            hosts = {h["id"]: h["cache"] for h in (await r.json())["hosts"]}
        assert hosts[home]["cached_tokens"] == second["prompt_eval_cached_count"]
        # Both turns share their whole 64-byte blocks, so the index holds them as one prompt.
        assert 0 < hosts[home]["hit_rate"] < 1 and hosts[home]["index_bytes"] >= len(system) // 64 * 64
