"""Resume paths of issue 15 that `test_resume.py` leaves out, through the simulator.

* an error line that blames the host (status 500, Ollama's "an error was encountered while
  running the model") mid-stream is resumed like a dead host, under the metric reason `error`;
* every answer `plan_continuation` refuses to continue ends with today's error line: the issue
  allows a resume "only at points where the relayed output can be re-sent faithfully; otherwise
  end with the error line as today";
* `/v1/completions` with `stream: true` resumes into one SSE stream with one `[DONE]`.

As in `test_resume.py`, the failing host is tier 0 and the healthy one tier 1.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from olol.proxy import RunningProxy
from tests.proxy.helpers import proxy_over
from tests.proxy.test_resume import CHAT, GENERATE, _post, _text
from tests.support.ollama_sim import DEFAULT_FAIL_MESSAGE, OllamaSim


@asynccontextmanager
async def failing_then_healthy(factory: Any, models: list[str] | None = None, **knobs: Any) -> AsyncIterator[
        tuple[RunningProxy, OllamaSim, OllamaSim]]:
    """`knobs` make the tier-0 host fail mid-stream (`die_after_tokens` or `fail_after_tokens`)."""
    failing = await factory(models=models, response_tokens=24, **knobs)
    healthy = await factory(models=models, response_tokens=24)
    tiers = {failing.url: 0, healthy.url: 1}
    async with proxy_over(failing, healthy, host_tiers=tiers, affinity=False) as proxy:
        yield proxy, failing, healthy


async def _metrics(http: aiohttp.ClientSession, proxy: RunningProxy) -> str:
    return await (await http.get(proxy.url + "/metrics")).text()


# --- 1. an error line that is the host's ----------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "body"), [("/api/chat", CHAT), ("/api/generate", GENERATE)])
async def test_an_error_line_from_the_host_is_resumed_on_another_host(ollama_sim_factory, caplog,  # type: ignore[no-untyped-def]
                                                                     path: str, body: dict[str, Any]) -> None:
    async with failing_then_healthy(ollama_sim_factory, fail_after_tokens=5) as (proxy, flaky, healthy), \
            aiohttp.ClientSession() as http:
        reference = await _post(http, healthy.url + path, body)
        lines = await _post(http, proxy.url + path, body)
        metrics = await _metrics(http, proxy)
    assert flaky.failed_streams == 1  # the host did send its error line after five tokens
    # The client never sees that line: the answer finishes on the other host, whole and once.
    assert not any("error" in line for line in lines)
    assert _text(lines) == _text(reference)
    final = lines[-1]
    assert final["done"] and final["done_reason"] == "stop" and final["eval_count"] == 24
    assert final["olol"] == {"hosts": [flaky.url, healthy.url], "resumes": 1}
    # A 500 error line is the host's (failure_reason: "error"), not a transport failure ("unavailable").
    assert 'olol_resumes_total{outcome="resumed",reason="error"} 1.0' in metrics
    assert 'reason="unavailable"' not in metrics
    assert "stage=\"mid_stream\"" not in metrics
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("resumed ")]
    assert said and f"after {flaky.url} failed (error) at token 5" in said[-1] and DEFAULT_FAIL_MESSAGE in said[-1]


# --- 2. answers that are not continued: today's error line -------------------------------------------------------

async def _refused(factory: Any, path: str, body: dict[str, Any], *, die_after: int,
                   models: list[str] | None = None) -> tuple[list[dict[str, Any]], str, OllamaSim]:
    """The client's lines and /metrics for `body` on a host that dies after `die_after` chunks."""
    async with failing_then_healthy(factory, models, die_after_tokens=die_after) as (proxy, dying, healthy), \
            aiohttp.ClientSession() as http:
        lines = await _post(http, proxy.url + path, body)
        metrics = await _metrics(http, proxy)
    assert dying.died_streams == 1
    # No continuation was asked of the healthy host, on either endpoint (a templated generate continues as chat).
    assert healthy.requests["/api/chat"] == 0 and healthy.requests["/api/generate"] == 0
    # Today's behaviour: what the dying host sent, then one error line, and nothing after it.
    assert len(lines) == die_after + 1 and "error" in lines[-1]
    assert sum("error" in line for line in lines) == 1
    endpoint = path.rsplit("/", 1)[-1]
    assert f'olol_errors_total{{endpoint="{endpoint}",stage="mid_stream"}} 1.0' in metrics
    return lines, metrics, dying


async def test_a_relayed_tool_call_is_not_resumed(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    # A tool call is not text: the continuation's assistant message can only carry the text relayed so far, so
    # the next host would answer the user's turn again and call the tool a second time (a duplicate call).
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "call get_weather {\"city\": \"Oslo\"}"}],
            "tools": tools}
    lines, metrics, _ = await _refused(ollama_sim_factory, "/api/chat", body, die_after=1)
    assert lines[0]["message"]["tool_calls"] == [{"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]
    assert 'olol_resumes_total{outcome="refused_tool_calls",reason="unavailable"} 1.0' in metrics


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate"])
async def test_a_format_grammar_is_not_resumed(ollama_sim_factory, path: str) -> None:  # type: ignore[no-untyped-def]
    # `format` constrains the whole answer to JSON: a continuation under the same grammar would start a new
    # JSON document after the half already relayed, so the client's text would not parse.
    body = {**(CHAT if path == "/api/chat" else GENERATE), "format": "json"}
    lines, metrics, _ = await _refused(ollama_sim_factory, path, body, die_after=2)
    assert _text(lines[:2]).startswith('{"response":')
    assert 'olol_resumes_total{outcome="refused_format",reason="unavailable"} 1.0' in metrics


async def test_a_suffix_is_not_resumed(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    # `suffix` is fill-in-the-middle: the text so far must end where the suffix begins, which neither a chat
    # turn nor a raw prompt (the prompt plus the text so far) can say, so the middle cannot be finished faithfully.
    coder = "qwen2.5-coder:1.5b"  # the simulator takes `suffix` only for models with the insert capability
    body = {"model": coder, "prompt": "def add(a, b):", "suffix": "    return c"}
    _, metrics, _ = await _refused(ollama_sim_factory, "/api/generate", body, die_after=3, models=[coder])
    assert 'olol_resumes_total{outcome="refused_suffix",reason="unavailable"} 1.0' in metrics


async def test_a_template_override_is_not_resumed(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    # A templated generate continues as a chat turn, which the next host renders with the model's own template:
    # the request's Go `template` override would be lost, so the rest would answer a different prompt.
    body = {**GENERATE, "template": "<<{{ .Prompt }}>>"}
    _, metrics, _ = await _refused(ollama_sim_factory, "/api/generate", body, die_after=3)
    assert 'olol_resumes_total{outcome="refused_template",reason="unavailable"} 1.0' in metrics


async def test_context_tokens_are_not_resumed(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    # `context` holds the tokens of an earlier exchange: a chat continuation has no place for them, so the
    # next host would continue without that conversation and its answer would not be the same one.
    body = {**GENERATE, "context": [1, 2, 3]}
    _, metrics, _ = await _refused(ollama_sim_factory, "/api/generate", body, die_after=3)
    assert 'olol_resumes_total{outcome="refused_context",reason="unavailable"} 1.0' in metrics


async def test_raw_generate_with_context_is_still_resumed(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    # The counterpart of the refusals above: with `raw` the prompt plus the text so far is the whole continuation
    # (no template, no chat turn), so the template and context refusals do not apply and the answer finishes.
    body = {**GENERATE, "raw": True, "context": [1, 2, 3]}
    async with failing_then_healthy(ollama_sim_factory, die_after_tokens=5) as (proxy, dying, healthy), \
            aiohttp.ClientSession() as http:
        lines = await _post(http, proxy.url + "/api/generate", body)
    assert dying.died_streams == 1 and not any("error" in line for line in lines)
    continuation = healthy.request_log[-1]
    assert continuation.path == "/api/generate" and continuation.body["raw"] is True
    assert continuation.body["prompt"] == GENERATE["prompt"] + _text(lines[:5])
    assert continuation.body["context"] == [1, 2, 3]  # the earlier exchange goes with it, as it went first
    assert lines[-1]["olol"] == {"hosts": [dying.url, healthy.url], "resumes": 1}


# --- 3. /v1/completions, streaming ----------------------------------------------------------------------------------

async def _sse(resp: aiohttp.ClientResponse) -> list[str]:
    """The `data:` payloads of an SSE body, in order."""
    body = (await resp.read()).decode()
    return [event.removeprefix("data: ") for event in body.split("\n\n") if event.strip()]


@pytest.mark.parametrize("cut", [{"die_after_tokens": 5}, {"fail_after_tokens": 5}], ids=["killed", "error_line"])
async def test_streaming_v1_completions_resume_into_one_sse_stream(ollama_sim_factory,  # type: ignore[no-untyped-def]
                                                                    cut: dict[str, int]) -> None:
    body = {"model": "llama3.2", "prompt": GENERATE["prompt"], "stream": True}
    async with failing_then_healthy(ollama_sim_factory, **cut) as (proxy, failing, healthy), \
            aiohttp.ClientSession() as http:
        reference = await _post(http, healthy.url + "/api/generate", GENERATE)
        async with http.post(proxy.url + "/v1/completions", json=body) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
            events = await _sse(resp)
        continuation = healthy.request_log[-1]
    assert failing.died_streams + failing.failed_streams == 1
    # A templated generate continues as a chat turn that ends with the text relayed so far.
    assert continuation.path == "/api/chat"
    assert events.count("[DONE]") == 1 and events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert not any("error" in c for c in chunks)
    assert all(c["object"] == "text_completion" for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks) == _text(reference)  # no repeated or missing text
    assert continuation.body["messages"][-1] == {"role": "assistant",
                                                 "content": "".join(c["choices"][0]["text"] for c in chunks[:5])}
    assert [c["choices"][0]["finish_reason"] for c in chunks].count("stop") == 1
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
