"""Poison requests through agents: each is that request's 400, no host is marked down (issue 20).

On d9d1e00 each of these answered 502 and marked every agent it was retried on as
down: the proxy's own protobuf conversion failed, and the dispatcher took any
untyped error for the host failing.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from olol.backends.ollama.backend import OllamaBackend
from olol.proxy import RunningProxy
from tests.proxy.helpers import proxy_over
from tests.support.agent_fixtures import RunningAgent, start_agent
from tests.support.ollama_sim import OllamaSim
from tests.support.poison import MODEL, POISON, USER, nested


@pytest.fixture
async def cluster() -> AsyncIterator[RunningProxy]:
    sims = [await OllamaSim().start() for _ in range(3)]
    agents: list[RunningAgent] = []
    try:
        for sim in sims:
            agents.append(await start_agent("asyncio", OllamaBackend(sim.url)))
        async with proxy_over(*(a.target for a in agents), probe_interval=60.0) as proxy:
            yield proxy
    finally:
        for agent in agents:
            await agent.stop()
        for sim in sims:
            await sim.stop()


def down(proxy: RunningProxy) -> list[str]:
    return [h.id for h in proxy.context.cluster.hosts.values() if not h.healthy]


async def test_each_poison_request_is_a_400_and_no_host_goes_down(cluster: RunningProxy) -> None:
    async with aiohttp.ClientSession() as http:
        for path, body in POISON:
            async with http.post(cluster.url + path, data=json.dumps(body)) as r:
                reply = await r.json()
            assert r.status == 400, (body, reply)
            assert set(reply) == {"error"}
            assert down(cluster) == [], (body, reply)
        async with http.post(cluster.url + "/api/chat", json={"model": MODEL, "messages": [USER]}) as r:
            assert r.status == 200


async def test_the_deepest_format_the_body_check_lets_through_reaches_the_host(cluster: RunningProxy) -> None:
    from olol.proxy.api.bodies import MAX_DEPTH

    body = {"model": MODEL, "messages": [USER], "format": nested(MAX_DEPTH - 2), "stream": False}
    async with aiohttp.ClientSession() as http, http.post(cluster.url + "/api/chat", json=body) as r:
        assert r.status == 200, await r.text()
    assert down(cluster) == []


@pytest.mark.parametrize(
    "turn",
    [
        {"message": USER, "tools": ["x"]},
        {"message": {"role": ["user"], "content": "x"}},
        {"message": {**USER, "images": [None]}},
        {"message": USER, "keep_alive": 1e300},
        {"message": USER, "format": nested(50)},
    ],
)
async def test_session_turns_get_the_chat_body_checks(turn: dict[str, Any]) -> None:
    async with OllamaSim() as sim, proxy_over(sim) as proxy, aiohttp.ClientSession() as http:
        async with http.post(proxy.url + "/api/sessions", json={"model": MODEL}) as r:
            session = await r.json()
        async with http.post(f"{proxy.url}/api/sessions/{session['id']}/chat", data=json.dumps(turn)) as r:
            reply = await r.json()
            assert r.status == 400, reply
        assert down(proxy) == []
        # The same content as a new session's seeded history and settings.
        seeded = {"model": MODEL, "messages": [turn["message"]], **{k: v for k, v in turn.items() if k != "message"}}
        async with http.post(proxy.url + "/api/sessions", data=json.dumps(seeded)) as r:
            assert r.status == 400, await r.text()


TOOL_SHAPES = [
    ({"messages": [{**USER, "tool_calls": [{"function": "f"}]}]},
     "ChatRequest.messages.tool_calls.function of type api.ToolCallFunction"),
    ({"messages": [{**USER, "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}]},
     "ChatRequest.messages.tool_calls.function.arguments of type map[string]interface {}"),
    ({"messages": [USER], "tools": [{"function": "x"}]}, "ChatRequest.tools.function of type api.ToolFunction"),
    ({"messages": [USER], "tools": [{"type": "function", "function": {"name": 7}}]},
     "ChatRequest.tools.function.name of type string"),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "message"), TOOL_SHAPES)
async def test_tool_shapes_go_cannot_decode_are_refused_before_any_host(
    ollama_sim: OllamaSim, fields: dict[str, Any], message: str
) -> None:
    # They used to pass the body checks, be routed, and fail in the agent's conversion: a host lease,
    # a routing decision and a traceback for each such request of a client sending them back to back.
    async with proxy_over(ollama_sim) as proxy, aiohttp.ClientSession() as http:
        async with http.post(proxy.url + "/api/chat", json={"model": MODEL, **fields}) as r:
            assert r.status == 400
            assert message in (await r.json())["error"]
        good = {"model": MODEL, "messages": [USER, {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "f", "arguments": {"a": 1}}}]}], "stream": False,
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]}  # fmt: skip
        async with http.post(proxy.url + "/api/chat", json=good) as r:
            assert r.status == 200
    assert ollama_sim.requests["/api/chat"] == 1
