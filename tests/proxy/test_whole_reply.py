"""`stream: false`: a host is asked for the whole reply once that is safe, else streamed and folded.

A host asked for a whole reply sends nothing until it is done, so the proxy only does so when the
first-byte timeout can cover the whole generation (see `Dispatcher._stream_body`). Either way the
client gets the same reply, and the proxy's TTFT statistics stay TTFT.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.proxy.helpers import proxy_over
from tests.support.ollama_sim import OllamaSim

BODY: dict[str, Any] = {"model": "llama3.2", "prompt": "Why is the sky blue?", "stream": False,
                        "options": {"num_predict": 4}}


async def _ask(proxy_url: str, times: int, body: dict[str, Any] = BODY) -> list[dict[str, Any]]:
    replies = []
    async with aiohttp.ClientSession() as http:
        for _ in range(times):
            async with http.post(proxy_url + "/api/generate", json=body) as resp:
                assert resp.status == 200
                assert resp.content_type == "application/json"
                replies.append(await resp.json())
    return replies


def _upstream_stream_flags(sim: OllamaSim) -> list[Any]:
    return [r.body.get("stream") for r in sim.request_log if r.path == "/api/generate"]


async def test_a_measured_host_is_asked_for_the_whole_reply() -> None:
    async with OllamaSim(["llama3.2"]) as sim, proxy_over(sim) as proxy:
        replies = await _ask(proxy.url, 3)
    # Nothing was measured (nor loaded) yet: the first call streams, so the timeout covers one token only.
    assert _upstream_stream_flags(sim) == [True, False, False]
    assert len({r["response"] for r in replies}) == 1  # the same text, folded here or whole from the host
    assert all(r["done"] and r["eval_count"] == 4 and r["model"] == "llama3.2" for r in replies)


async def test_a_reply_that_may_outlast_the_first_byte_timeout_stays_streamed() -> None:
    # About 0.2 s of generation: within a 0.5 s first-byte timeout, but not 4x within it.
    async with OllamaSim(["llama3.2"], token_rate=20) as sim, proxy_over(sim, first_byte_timeout=0.5) as proxy:
        replies = await _ask(proxy.url, 3)
    assert _upstream_stream_flags(sim) == [True, True, True]
    assert all(r["done"] and r["eval_count"] == 4 for r in replies)


async def test_a_streaming_client_is_always_streamed() -> None:
    async with OllamaSim(["llama3.2"]) as sim, proxy_over(sim) as proxy, aiohttp.ClientSession() as http:
        for _ in range(2):
            async with http.post(proxy.url + "/api/generate", json={**BODY, "stream": True}) as resp:
                assert resp.content_type == "application/x-ndjson"
                assert len((await resp.read()).splitlines()) == 5  # four tokens and the final line
    assert _upstream_stream_flags(sim) == [True, True]


async def test_a_whole_reply_does_not_count_its_generation_as_time_to_first_token() -> None:
    # Without a first-byte timeout every `stream: false` call goes whole, the first one included.
    async with OllamaSim(["llama3.2"], token_rate=20) as sim, proxy_over(sim, first_byte_timeout=None) as proxy:
        [reply] = await _ask(proxy.url, 1)
        stats = proxy.context.cluster.stats.get(sim.url, "llama3.2:latest")
    assert _upstream_stream_flags(sim) == [False]
    generation_s = reply["eval_duration"] / 1e9
    assert generation_s > 0.1
    assert stats is not None and stats.ttft.value is not None
    assert stats.ttft.value < generation_s / 2
