"""Resuming a stream on another host after the first byte (issue 15), through the simulator.

The simulator continues a final assistant message the way Ollama does (the rest of the answer it
starts), so a resumed answer must equal, byte for byte, the answer the healthy host gives alone.
The dying host is tier 0 and the healthy one tier 1, so every request starts on the dying host.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import ollama
import openai
import pytest

from olol.proxy import RunningProxy
from tests.proxy.helpers import ndjson, proxy_over
from tests.support.ollama_sim import OllamaSim

CHAT: dict[str, Any] = {"model": "llama3.2", "messages": [{"role": "user", "content": "tell me a story"}]}
GENERATE: dict[str, Any] = {"model": "llama3.2", "prompt": "tell me a story"}


@asynccontextmanager
async def dying_then_healthy(factory: Any, die_after: int = 5, **settings: Any) -> AsyncIterator[
        tuple[RunningProxy, OllamaSim, OllamaSim]]:
    dying = await factory(die_after_tokens=die_after, response_tokens=24)
    healthy = await factory(response_tokens=24)
    tiers = {dying.url: 0, healthy.url: 1}
    async with proxy_over(dying, healthy, host_tiers=tiers, affinity=False, **settings) as proxy:
        yield proxy, dying, healthy


async def _post(http: aiohttp.ClientSession, url: str, body: dict[str, Any],
                headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    async with http.post(url, json=body, headers=headers) as resp:
        assert resp.status == 200
        return await asyncio.wait_for(ndjson(resp), 10)


async def _up(proxy: RunningProxy, sim: OllamaSim) -> None:
    """Wait until the monitor has brought a host that died mid-stream back (its next probe)."""
    host = proxy.context.cluster.hosts[sim.url]
    async with asyncio.timeout(5):
        while not host.healthy:
            await asyncio.sleep(0.01)


def _text(lines: list[dict[str, Any]]) -> str:
    return "".join(str(line.get("response") or (line.get("message") or {}).get("content") or "") for line in lines)


@pytest.mark.parametrize(("path", "body"), [("/api/chat", CHAT), ("/api/generate", GENERATE)])
async def test_stream_resumes_on_another_host_byte_for_byte(ollama_sim_factory, path: str,  # type: ignore[no-untyped-def]
                                                            body: dict[str, Any]) -> None:
    async with dying_then_healthy(ollama_sim_factory) as (proxy, dying, healthy), aiohttp.ClientSession() as http:
        reference = await _post(http, healthy.url + path, body)
        lines = await _post(http, proxy.url + path, body)
        metrics = await (await http.get(proxy.url + "/metrics")).text()
    assert dying.died_streams == 1
    assert not any("error" in line for line in lines)
    assert _text(lines) == _text(reference)  # no repeated or missing text
    final, expected = lines[-1], reference[-1]
    assert final["done"] and final["done_reason"] == expected["done_reason"] == "stop"
    assert final["eval_count"] == expected["eval_count"] == 24  # the count covers the whole answer
    assert final["olol"] == {"hosts": [dying.url, healthy.url], "resumes": 1}
    assert final["total_duration"] >= final["eval_duration"] > 0
    assert 'olol_resumes_total{outcome="resumed",reason="unavailable"} 1.0' in metrics
    assert 'olol_errors_total{endpoint="chat",stage="mid_stream"}' not in metrics


async def test_resumed_answer_through_the_ollama_client_streaming_and_whole(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    async with dying_then_healthy(ollama_sim_factory) as (proxy, dying, healthy):
        reference = await ollama.AsyncClient(host=healthy.url).chat(**CHAT)
        client = ollama.AsyncClient(host=proxy.url)
        whole = await client.chat(**CHAT)
        await _up(proxy, dying)
        parts = [part async for part in await client.chat(**CHAT, stream=True)]
        await _up(proxy, dying)
        generated = await client.generate(**GENERATE)
        generate_reference = await ollama.AsyncClient(host=healthy.url).generate(**GENERATE)
    assert dying.died_streams == 3
    assert whole.message.content == reference.message.content
    assert whole.eval_count == reference.eval_count
    assert "".join(p.message.content or "" for p in parts) == reference.message.content
    assert generated.response == generate_reference.response and generated.eval_count == 24


async def test_resume_through_the_openai_client(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    async with dying_then_healthy(ollama_sim_factory) as (proxy, dying, healthy):
        reference = await ollama.AsyncClient(host=healthy.url).chat(**CHAT)
        generate_reference = await ollama.AsyncClient(host=healthy.url).generate(**GENERATE)
        client = openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key="unused")
        messages: Any = CHAT["messages"]
        whole = await client.chat.completions.create(model="llama3.2", messages=messages)
        await _up(proxy, dying)
        stream = await client.chat.completions.create(model="llama3.2", messages=messages, stream=True,
                                                      stream_options={"include_usage": True})
        chunks = [chunk async for chunk in stream]
        await _up(proxy, dying)
        completion = await client.completions.create(model="llama3.2", prompt=GENERATE["prompt"])
    assert dying.died_streams == 3
    assert whole.choices[0].message.content == reference.message.content
    assert whole.usage is not None and whole.usage.completion_tokens == 24
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == reference.message.content
    usage = [c.usage for c in chunks if c.usage]
    assert usage and usage[-1].completion_tokens == 24
    assert completion.choices[0].text == generate_reference.response


async def test_the_token_budget_counts_what_was_sent(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    body = {**CHAT, "options": {"num_predict": 10}}
    async with dying_then_healthy(ollama_sim_factory, die_after=4) as (proxy, _dying, healthy), \
            aiohttp.ClientSession() as http:
        reference = await _post(http, healthy.url + "/api/chat", body)
        lines = await _post(http, proxy.url + "/api/chat", body)
        continuation = healthy.request_log[-1].body
    assert continuation["options"]["num_predict"] == 6
    assert continuation["messages"][-1] == {"role": "assistant", "content": _text(lines[:4])}
    assert _text(lines) == _text(reference)
    assert lines[-1]["eval_count"] == 10 and lines[-1]["done_reason"] == "length"


async def test_a_spent_budget_ends_the_answer_without_another_host(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    body = {**CHAT, "options": {"num_predict": 5}}
    async with dying_then_healthy(ollama_sim_factory, die_after=5) as (proxy, _dying, healthy), \
            aiohttp.ClientSession() as http:
        lines = await _post(http, proxy.url + "/api/chat", body)
    assert healthy.requests["/api/chat"] == 0
    assert lines[-1]["done"] and lines[-1]["done_reason"] == "length" and lines[-1]["eval_count"] == 5
    assert len(lines) == 6


@pytest.mark.parametrize("switch", ["flag", "option", "header"])
async def test_resume_can_be_turned_off(ollama_sim_factory, switch: str) -> None:  # type: ignore[no-untyped-def]
    settings = {"resume": False} if switch == "flag" else {}
    body = {**CHAT, "options": {"resume": False}} if switch == "option" else CHAT
    headers = {"X-OLOL-Resume": "false"} if switch == "header" else None
    async with dying_then_healthy(ollama_sim_factory, **settings) as (proxy, dying, healthy), \
            aiohttp.ClientSession() as http:
        lines = await _post(http, proxy.url + "/api/chat", body, headers)
    assert len(lines) == 6 and "error" in lines[-1]  # today's behaviour: five tokens, then the error line
    assert healthy.requests["/api/chat"] == 0
    assert all("resume" not in (r.body.get("options") or {}) for r in dying.request_log)  # the proxy's option


async def test_max_resumes_holds_and_every_host_failing_ends_with_one_error_line(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    sims = [await ollama_sim_factory(die_after_tokens=2, response_tokens=24) for _ in range(4)]
    tiers = {sim.url: n for n, sim in enumerate(sims)}
    async with proxy_over(*sims, host_tiers=tiers, affinity=False, max_resumes=2) as proxy, \
            aiohttp.ClientSession() as http:
        lines = await _post(http, proxy.url + "/api/chat", CHAT)
        metrics = await (await http.get(proxy.url + "/metrics")).text()
    assert [s.died_streams for s in sims] == [1, 1, 1, 0]  # the first host and two resumes, no more
    assert "error" in lines[-1] and sum("error" in line for line in lines) == 1
    assert len(lines) == 7  # 2 tokens from each of three hosts, then the error line
    assert 'olol_resumes_total{outcome="limit",reason="unavailable"} 1.0' in metrics
    assert 'olol_errors_total{endpoint="chat",stage="mid_stream"} 1.0' in metrics


async def test_no_other_host_ends_with_one_error_line_not_a_hang(ollama_sim_factory, caplog) -> None:  # type: ignore[no-untyped-def]
    sims = [await ollama_sim_factory(die_after_tokens=2, response_tokens=24) for _ in range(2)]
    async with proxy_over(*sims, affinity=False, max_queue_wait=1) as proxy, aiohttp.ClientSession() as http:
        lines = await _post(http, proxy.url + "/api/generate", GENERATE)
    assert "error" in lines[-1] and sum("error" in line for line in lines) == 1
    assert len(lines) == 5
    # The log says why (both hosts tried), not that the model does not exist.
    said = [r.getMessage() for r in caplog.records if "could not resume" in r.getMessage()]
    assert said and "no other host has model" in said[-1] and "not found" not in said[-1]


async def test_thinking_already_relayed_is_not_resumed(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    body = {"model": "qwen3:0.6b", "messages": CHAT["messages"], "think": True}
    async with dying_then_healthy(ollama_sim_factory, die_after=3) as (proxy, _dying, healthy), \
            aiohttp.ClientSession() as http:
        lines = await _post(http, proxy.url + "/api/chat", body)
        metrics = await (await http.get(proxy.url + "/metrics")).text()
    assert "error" in lines[-1] and healthy.requests["/api/chat"] == 0
    assert 'olol_resumes_total{outcome="refused_thinking",reason="unavailable"} 1.0' in metrics


async def test_sigkilled_host_process_mid_stream_is_resumed(ollama_sim_process, ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    victim = await ollama_sim_process(models=["llama3.2"], token_rate=40, response_tokens=40)
    healthy = await ollama_sim_factory(response_tokens=40)
    async with proxy_over(victim.url, healthy, host_tiers={victim.url: 0, healthy.url: 1}, affinity=False) as proxy, \
            aiohttp.ClientSession() as http:
        reference = await _post(http, healthy.url + "/api/chat", CHAT)
        async with http.post(proxy.url + "/api/chat", json=CHAT) as resp:
            lines = [json.loads(await resp.content.readline()) for _ in range(3)]
            victim.kill()
            lines += await asyncio.wait_for(ndjson(resp), 10)
    assert _text(lines) == _text(reference)
    assert lines[-1]["olol"]["hosts"] == [victim.url, healthy.url] and lines[-1]["eval_count"] == 40


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate"])
async def test_resume_across_agents(ollama_sim_factory, path: str) -> None:  # type: ignore[no-untyped-def]
    from olol.backends.ollama.backend import OllamaBackend
    from tests.support.agent_fixtures import start_agent

    dying = await ollama_sim_factory(die_after_tokens=5, response_tokens=24)
    healthy = await ollama_sim_factory(response_tokens=24)
    agents = [await start_agent("asyncio", OllamaBackend(sim.url)) for sim in (dying, healthy)]
    body = CHAT if path == "/api/chat" else GENERATE
    try:
        tiers = {agents[0].target: 0, agents[1].target: 1}
        async with proxy_over(*(a.target for a in agents), host_tiers=tiers, affinity=False) as proxy, \
                aiohttp.ClientSession() as http:
            reference = await _post(http, healthy.url + path, body)
            lines = await _post(http, proxy.url + path, body)
    finally:
        for agent in agents:
            await agent.client.close()
            await agent.stop()
    assert dying.died_streams == 1
    assert _text(lines) == _text(reference) and lines[-1]["eval_count"] == 24
    assert lines[-1]["olol"] == {"hosts": [a.target for a in agents], "resumes": 1}


@pytest.mark.parametrize(("args", "expected"), [
    ([], (True, 2, None)),
    (["--no-resume", "--max-resumes", "5", "--stall-timeout", "3.5"], (False, 5, 3.5)),
])
def test_cli_flags_reach_the_proxy_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Any, args: list[str],
                                          expected: tuple[bool, int, float | None]) -> None:
    from typer.testing import CliRunner

    from olol.cli import app

    seen: list[Any] = []
    monkeypatch.setattr("olol.proxy.server.serve", seen.append)
    result = CliRunner().invoke(app, ["proxy", "--servers", "http://127.0.0.1:1", "--state-dir", str(tmp_path),
                                      *args])
    assert result.exit_code == 0, result.output
    assert (seen[0].resume, seen[0].max_resumes, seen[0].stall_timeout) == expected


@pytest.mark.parametrize("fallback", [False, True])
async def test_a_resume_changes_quantization_only_when_fallback_is_allowed(ollama_sim_factory,  # type: ignore[no-untyped-def]
                                                                           fallback: bool) -> None:
    q4, q8 = "llama3.2:1b-q4_0", "llama3.2:1b-q8_0"
    dying = await ollama_sim_factory(models=[q4], die_after_tokens=3)
    other = await ollama_sim_factory(models=[q8])
    body = {"model": q4, "messages": CHAT["messages"]}
    async with proxy_over(dying, other, host_tiers={dying.url: 0, other.url: 1}, affinity=False,
                          quant_fallback=fallback, max_queue_wait=1) as proxy, aiohttp.ClientSession() as http:
        lines = await _post(http, proxy.url + "/api/chat", body)
    if fallback:
        assert lines[-1]["done"] and lines[-1]["olol"]["hosts"] == [dying.url, other.url]
        assert other.request_log[-1].body["model"] == q8
    else:
        assert "error" in lines[-1] and other.requests["/api/chat"] == 0
