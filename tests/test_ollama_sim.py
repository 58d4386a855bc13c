"""The Ollama simulator is the oracle many other tests lean on, so it is held to Ollama's
API here: the official `ollama` client must work against it unchanged, and raw HTTP
checks pin status codes, framing and the failure modes it injects."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import ollama
import pytest

from olol.errors import Busy, ModelNotFound
from tests.support.ollama_sim import BUSY_MESSAGE, ModelSpec, OllamaSim, parse_keep_alive
from tests.support.sim_fixtures import SimFactory, SimProcessFactory

pytestmark = pytest.mark.timeout(30)

RFC3339_NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Readiness polling: a state the sim reaches, not a guessed delay."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.002)


@contextlib.asynccontextmanager
async def connect(url: str) -> AsyncIterator[ollama.AsyncClient]:
    c = ollama.AsyncClient(host=url)
    try:
        yield c
    finally:
        await c.close()  # type: ignore[no-untyped-call]


@pytest.fixture
async def client(ollama_sim: OllamaSim) -> AsyncIterator[ollama.AsyncClient]:
    async with connect(ollama_sim.url) as c:
        yield c


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(http: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, str, Any]:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    async with http.post(url, data=data) as r:
        text = await r.text()
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            parsed = None
        return r.status, r.headers.get("Content-Type", ""), parsed


async def ndjson(resp: aiohttp.ClientResponse) -> list[dict[str, Any]]:
    return [json.loads(line) async for line in resp.content if line.strip()]


# ----------------------------------------------------------------- basics
async def test_root_version_and_unknown_routes(ollama_sim: OllamaSim, http: aiohttp.ClientSession) -> None:
    async with http.get(ollama_sim.url + "/") as r:
        assert (r.status, await r.text()) == (200, "Ollama is running")
    async with http.head(ollama_sim.url + "/") as r:
        assert r.status == 200
    async with http.get(ollama_sim.url + "/api/version") as r:
        assert await r.json() == {"version": ollama_sim.version}
    async with http.head(ollama_sim.url + "/api/tags") as r:
        assert r.status == 200
    async with http.get(ollama_sim.url + "/api/generate") as r:  # wrong method: gin says 404
        assert (r.status, await r.text()) == (404, "404 page not found")
    assert ollama_sim.requests["/"] == 2 and ollama_sim.requests["/api/version"] == 1


async def test_generate_streams_ndjson_with_ollama_stats(client: ollama.AsyncClient, ollama_sim: OllamaSim) -> None:
    chunks = [c async for c in await client.generate(model="llama3.2", prompt="hello world", stream=True)]
    body, final = chunks[:-1], chunks[-1]
    assert len(body) == ollama_sim.response_tokens and not any(c.done for c in body)
    assert final.done and final.done_reason == "stop" and final.response == ""
    for name in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(getattr(final, name), int) and getattr(final, name) > 0
    assert final.prompt_eval_count == 2 and final.eval_count == len(body)
    assert final.context and all(isinstance(t, int) for t in final.context)
    assert all(RFC3339_NANO.match(c.created_at or "") for c in chunks)
    assert final.model == "llama3.2"  # echoed as the client wrote it

    whole = await client.generate(model="llama3.2:latest", prompt="hello world")
    assert whole.response == "".join(c.response or "" for c in body)  # x == x:latest, same text
    assert whole.done_reason == "stop" and whole.eval_count == len(body)


async def test_generate_is_deterministic_per_model_prompt_and_seed(client: ollama.AsyncClient) -> None:
    async def text(model: str, prompt: str, **options: Any) -> str:
        return (await client.generate(model=model, prompt=prompt, options=options or None)).response or ""

    base = await text("llama3.2", "tell me a story")
    assert base == await text("library/llama3.2:latest", "tell me a story")
    assert base != await text("llama3.2", "tell me a joke")
    assert base != await text("llama3.2", "tell me a story", seed=7)
    assert base != await text("llama3.2:1b-q8_0", "tell me a story")


async def test_num_predict_and_stop(client: ollama.AsyncClient) -> None:
    short = await client.generate(model="llama3.2", prompt="count", options={"num_predict": 5})
    assert (short.eval_count, short.done_reason) == (5, "length")
    assert len((short.response or "").split()) == 5
    long = await client.generate(model="llama3.2", prompt="count", options={"num_predict": 40})
    assert long.eval_count == 40 and long.done_reason == "length"

    long_text = long.response or ""
    stop = " " + long_text.split()[5]
    stopped = await client.generate(model="llama3.2", prompt="count", options={"num_predict": 40, "stop": [stop]})
    assert stopped.done_reason == "stop"
    assert stopped.response == long_text[: long_text.find(stop)]


async def test_empty_prompt_loads_and_keep_alive_zero_unloads(client: ollama.AsyncClient) -> None:
    assert (await client.ps()).models == []
    loaded = await client.generate(model="llama3.2:1b-q8_0", prompt="")
    assert loaded.done and loaded.done_reason == "load" and loaded.response == ""
    running = (await client.ps()).models
    assert [m.model for m in running] == ["llama3.2:1b-q8_0"]
    expires = running[0].expires_at
    assert expires is not None
    assert abs(expires - (datetime.now(UTC) + timedelta(minutes=5))) < timedelta(seconds=10)
    assert running[0].size_vram == running[0].size and (running[0].size or 0) > 0

    unloaded = await client.generate(model="llama3.2:1b-q8_0", prompt="", keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert (await client.ps()).models == []


async def test_keep_alive_sets_expiry_and_expired_models_leave_ps(client: ollama.AsyncClient) -> None:
    await client.generate(model="llama3.2", prompt="hi", keep_alive="1h")
    await client.generate(model="qwen3:0.6b", prompt="hi", keep_alive=-1)
    by_name = {m.model: m.expires_at for m in (await client.ps()).models}
    now = datetime.now(UTC)
    assert by_name["llama3.2:latest"] is not None and by_name["qwen3:0.6b"] is not None
    assert abs(by_name["llama3.2:latest"] - (now + timedelta(hours=1))) < timedelta(seconds=10)
    assert by_name["qwen3:0.6b"].year > now.year + 100  # negative keep_alive: forever

    await client.generate(model="llama3.2", prompt="hi", keep_alive="50ms")
    deadline = time.monotonic() + 5
    while "llama3.2:latest" in {m.model for m in (await client.ps()).models}:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    assert {m.model for m in (await client.ps()).models} == {"qwen3:0.6b"}


def test_keep_alive_parsing_follows_go() -> None:
    assert parse_keep_alive("5m") == 300 * 10**9
    assert parse_keep_alive("1h30m") == 5400 * 10**9
    assert parse_keep_alive("250ms") == 250 * 10**6
    assert parse_keep_alive(0) == 0 and parse_keep_alive("0") == 0
    assert parse_keep_alive(1.5) == 1_500_000_000
    assert parse_keep_alive(-1) is None and parse_keep_alive("-1s") is None
    for bad, message in (("300", 'missing unit in duration "300"'), ("5x", 'unknown unit "x"'), ("", "invalid")):
        with pytest.raises(Exception, match=re.escape(message)):
            parse_keep_alive(bad)


async def test_max_loaded_models_evicts_the_least_recently_used(ollama_sim_factory: SimFactory) -> None:
    sim = await ollama_sim_factory(max_loaded_models=1)
    async with connect(sim.url) as c:
        await c.generate(model="llama3.2", prompt="a")
        await c.generate(model="qwen3:0.6b", prompt="b")
        assert [m.model for m in (await c.ps()).models] == ["qwen3:0.6b"]


# ----------------------------------------------------------------- chat
async def test_chat_stream_and_non_stream_agree(client: ollama.AsyncClient) -> None:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "why is the sky blue?"}]
    chunks = [c async for c in await client.chat(model="llama3.2", messages=messages, stream=True)]
    assert all(c.message.role == "assistant" for c in chunks)
    assert chunks[-1].done and chunks[-1].done_reason == "stop" and chunks[-1].message.content == ""
    streamed = "".join(c.message.content or "" for c in chunks)
    whole = await client.chat(model="llama3.2", messages=messages)
    assert whole.message.content == streamed and len(streamed.split()) == 16
    assert whole.prompt_eval_count == 7 and whole.eval_count == 16


async def test_chat_tool_calls_echo_the_named_tool(client: ollama.AsyncClient) -> None:
    explicit = await client.chat(
        model="llama3.2",
        messages=[{"role": "user", "content": 'please call get_weather {"city": "Paris"}'}],
        tools=[WEATHER_TOOL],
    )
    calls = explicit.message.tool_calls or []
    assert [(c.function.name, dict(c.function.arguments)) for c in calls] == [("get_weather", {"city": "Paris"})]
    assert explicit.message.content == ""

    chunks = [
        c
        async for c in await client.chat(
            model="llama3.2",
            messages=[{"role": "user", "content": "call get_weather"}],
            tools=[WEATHER_TOOL],
            stream=True,
        )
    ]
    streamed_calls = [call for c in chunks for call in c.message.tool_calls or []]
    assert len(streamed_calls) == 1 and chunks[-1].done
    args = dict(streamed_calls[0].function.arguments)
    assert isinstance(args["city"], str) and isinstance(args["days"], int)  # made from the schema

    answer = await client.chat(
        model="llama3.2",
        messages=[
            {"role": "user", "content": "call get_weather"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "get_weather", "arguments": args}}],
            },
            {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert not answer.message.tool_calls and answer.message.content  # after a tool result: text

    plain = await client.chat(model="llama3.2", messages=[{"role": "user", "content": "hello"}], tools=[WEATHER_TOOL])
    assert not plain.message.tool_calls and plain.message.content


async def test_thinking_streams_before_content(client: ollama.AsyncClient, ollama_sim: OllamaSim) -> None:
    messages = [{"role": "user", "content": "think first"}]
    chunks = [c async for c in await client.chat(model="qwen3:0.6b", messages=messages, think=True, stream=True)]
    kinds = ["thinking" if c.message.thinking else "content" for c in chunks[:-1]]
    assert kinds == ["thinking"] * ollama_sim.thinking_tokens + ["content"] * ollama_sim.response_tokens
    whole = await client.chat(model="qwen3:0.6b", messages=messages, think=True)
    assert whole.message.thinking == "".join(c.message.thinking or "" for c in chunks)
    assert whole.message.content == "".join(c.message.content or "" for c in chunks)

    generated = await client.generate(model="qwen3:0.6b", prompt="x", think=True)
    assert generated.thinking and generated.response
    with pytest.raises(ollama.ResponseError) as e:
        await client.chat(model="llama3.2", messages=messages, think=True)
    assert (e.value.status_code, e.value.error) == (400, '"llama3.2" does not support thinking')


async def test_structured_output_follows_format(client: ollama.AsyncClient) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "kind": {"enum": ["cat", "dog"]},
        },
    }
    reply = await client.chat(model="llama3.2", messages=[{"role": "user", "content": "a pet"}], format=schema)
    pet = json.loads(reply.message.content or "")
    assert set(pet) == {"name", "age", "tags", "kind"} and pet["kind"] == "cat"
    assert isinstance(pet["age"], int) and all(isinstance(t, str) for t in pet["tags"])
    streamed = [c async for c in await client.generate(model="llama3.2", prompt="x", format="json", stream=True)]
    assert isinstance(json.loads("".join(c.response or "" for c in streamed)), dict)


# ----------------------------------------------------------------- embeddings
def norm(v: Any) -> float:
    return math.sqrt(sum(x * x for x in v))


async def test_embed_unit_vectors_deterministic_and_dimensions(client: ollama.AsyncClient) -> None:
    one = await client.embed(model="nomic-embed-text", input="the quick brown fox")
    assert len(one.embeddings) == 1 and len(one.embeddings[0]) == 768
    assert math.isclose(norm(one.embeddings[0]), 1.0, rel_tol=1e-9)
    many = await client.embed(model="nomic-embed-text", input=["the quick brown fox", "another text", "x"])
    assert len(many.embeddings) == 3 and many.embeddings[0] == one.embeddings[0]
    assert many.embeddings[1] != many.embeddings[0] and many.prompt_eval_count == 7

    cut = await client.embed(model="nomic-embed-text", input="the quick brown fox", dimensions=64)
    prefix = one.embeddings[0][:64]
    assert len(cut.embeddings[0]) == 64
    assert cut.embeddings[0] == pytest.approx([x / norm(prefix) for x in prefix])

    llm = await client.embed(model="llama3.2", input="hi")  # Ollama lets completion models embed too
    assert len(llm.embeddings[0]) == 3072


async def test_embed_truncation_and_legacy_endpoint(client: ollama.AsyncClient) -> None:
    words = "one two three four five six"
    with pytest.raises(ollama.ResponseError) as e:
        await client.embed(model="nomic-embed-text", input=words, truncate=False, options={"num_ctx": 4})
    assert e.value.status_code == 400 and "exceeds" in e.value.error
    truncated = await client.embed(model="nomic-embed-text", input=words, options={"num_ctx": 4})
    first_four = await client.embed(model="nomic-embed-text", input="one two three four")
    assert truncated.embeddings == first_four.embeddings

    legacy = await client.embeddings(model="nomic-embed-text", prompt="one two three four")
    raw = list(legacy.embedding)
    assert not math.isclose(norm(raw), 1.0)  # /api/embeddings does not normalise...
    assert [x / norm(raw) for x in raw] == pytest.approx(first_four.embeddings[0])  # ...same direction


# ----------------------------------------------------------------- model management
async def test_list_and_show(client: ollama.AsyncClient) -> None:
    models = {m.model: m for m in (await client.list()).models}
    assert set(models) == {"llama3.2:latest", "llama3.2:1b-q8_0", "nomic-embed-text:latest", "qwen3:0.6b"}
    llama = models["llama3.2:latest"]
    assert llama.details is not None and llama.details.quantization_level == "Q4_0"
    assert llama.details.family == "llama" and llama.details.format == "gguf"
    assert llama.digest and re.fullmatch(r"[0-9a-f]{64}", llama.digest) and llama.size and llama.modified_at

    shown = await client.show("nomic-embed-text")
    assert shown.capabilities == ["embedding"]
    assert shown.modelinfo is not None
    assert shown.modelinfo["general.architecture"] == "nomic-bert"
    assert shown.modelinfo["nomic-bert.embedding_length"] == 768
    assert shown.modelinfo["nomic-bert.context_length"] == 2048
    chat_model = await client.show("llama3.2")
    assert chat_model.capabilities is not None and "completion" in chat_model.capabilities
    assert "stop" in (chat_model.parameters or "") and "FROM " in (chat_model.modelfile or "")
    with pytest.raises(ollama.ResponseError) as e:
        await client.show("nope")
    assert (e.value.status_code, e.value.error) == (404, "model 'nope' not found")


async def test_pull_streams_layer_progress_and_adds_the_model(
    client: ollama.AsyncClient, ollama_sim: OllamaSim, http: aiohttp.ClientSession
) -> None:
    events = [p async for p in await client.pull("qwen2.5:0.5b", stream=True)]
    statuses = [p.status for p in events]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    layers = [p for p in events if (p.status or "").startswith("pulling ") and p.digest]
    assert layers and all(p.status == f"pulling {(p.digest or '')[7:19]}" for p in layers)
    per_digest: dict[str, list[int]] = {}
    for p in layers:
        if p.digest not in per_digest:
            assert p.completed is None  # Go's omitempty: no "completed" before the first byte
        per_digest.setdefault(p.digest or "", []).append(p.completed or 0)
    for digest, steps in per_digest.items():
        total = next(p.total for p in layers if p.digest == digest)
        assert steps == sorted(steps) and steps[-1] == total and len(steps) > 1
        async with http.head(f"{ollama_sim.url}/api/blobs/{digest}") as r:
            assert r.status == 200
    assert "qwen2.5:0.5b" in {m.model for m in (await client.list()).models}
    assert (await client.pull("all-minilm")).status == "success"  # stream=False: one object

    with pytest.raises(ollama.ResponseError) as e:
        async for _ in await client.pull("no-such-model", stream=True):
            pass
    assert e.value.error == "pull model manifest: file does not exist"
    assert await post(http, ollama_sim.url + "/api/pull", {"model": "no-such-model", "stream": False}) == (
        500,
        "application/json; charset=utf-8",
        {"error": "pull model manifest: file does not exist"},
    )


async def test_push_streams_status_and_publishes(client: ollama.AsyncClient, ollama_sim: OllamaSim) -> None:
    ollama_sim.add_model("me/private:v1")
    statuses = [p.status async for p in await client.push("me/private:v1", stream=True)]
    assert statuses[0] == "retrieving manifest" and statuses[-2:] == ["pushing manifest", "success"]
    assert any(s and s.startswith("pushing ") for s in statuses[1:-2])
    await client.delete("me/private:v1")
    assert (await client.pull("me/private:v1")).status == "success"  # what was pushed can be pulled
    with pytest.raises(ollama.ResponseError, match="no such file or directory"):
        await client.push("me/missing")


async def test_blobs_create_copy_delete(
    client: ollama.AsyncClient, ollama_sim: OllamaSim, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF" + bytes(range(256)) * 8)
    digest = await client.create_blob(gguf)
    assert digest == "sha256:" + hashlib.sha256(gguf.read_bytes()).hexdigest()
    async with http.head(f"{ollama_sim.url}/api/blobs/{digest}") as r:
        assert r.status == 200
    async with http.head(f"{ollama_sim.url}/api/blobs/sha256:{'0' * 64}") as r:
        assert r.status == 404
    async with http.post(f"{ollama_sim.url}/api/blobs/{digest}", data=b"ignored") as r:
        assert r.status == 200  # already present
    async with http.post(f"{ollama_sim.url}/api/blobs/sha256:{'1' * 64}", data=b"other bytes") as r:
        assert r.status == 400 and (await r.json())["error"].startswith("digest mismatch")
    async with http.post(f"{ollama_sim.url}/api/blobs/notadigest", data=b"x") as r:
        assert (r.status, await r.json()) == (400, {"error": "invalid digest format"})

    assert (await client.create("tiny", files={"tiny.gguf": digest})).status == "success"
    assert "tiny:latest" in {m.model for m in (await client.list()).models}

    statuses = [
        p.status
        async for p in await client.create(
            "terse", from_="llama3.2", system="You are terse.", parameters={"num_predict": 3}, stream=True
        )
    ]
    assert any(s and s.startswith("using existing layer sha256:") for s in statuses)
    assert any(s and s.startswith("creating new layer sha256:") for s in statuses)
    assert statuses[-2:] == ["writing manifest", "success"]
    assert "You are terse." in ((await client.show("terse")).modelfile or "")
    assert (await client.generate(model="terse", prompt="hi")).eval_count == 3  # PARAMETER is a default

    with pytest.raises(ollama.ResponseError) as e:
        await client.create("broken", files={"x.gguf": "sha256:" + "2" * 64})
    assert e.value.status_code == 400 and "blob not found" in e.value.error
    with pytest.raises(ollama.ResponseError) as e:
        await client.create("empty")
    assert (e.value.status_code, e.value.error) == (400, "neither 'from' or 'files' was specified")

    assert (await client.copy("terse", "terse2")).status == "success"
    assert (await client.generate(model="terse2", prompt="hi")).eval_count == 3
    with pytest.raises(ollama.ResponseError) as e:
        await client.copy("ghost", "ghost2")
    assert e.value.status_code == 404
    assert (await client.delete("terse2")).status == "success"
    with pytest.raises(ollama.ResponseError) as e:
        await client.delete("terse2")
    assert (e.value.status_code, e.value.error) == (404, "model 'terse2' not found")


# ----------------------------------------------------------------- validation, raw HTTP
async def test_request_validation_matches_ollama(ollama_sim: OllamaSim, http: aiohttp.ClientSession) -> None:
    url = ollama_sim.url
    ctype = "application/json; charset=utf-8"
    assert await post(http, url + "/api/generate", {"prompt": "x"}) == (400, ctype, {"error": "model is required"})
    assert await post(http, url + "/api/chat", {"messages": []}) == (400, ctype, {"error": "model is required"})
    assert await post(http, url + "/api/generate", {"model": "ghost", "prompt": "x"}) == (
        404,
        ctype,
        ModelNotFound("ghost").to_json(),  # the project's text must stay Ollama's
    )
    assert (await post(http, url + "/api/embed", {"model": "ghost", "input": "x"}))[0] == 404
    status, _, body = await post(http, url + "/api/generate", "{not json")
    assert status == 400 and "invalid character" in body["error"]
    assert (await post(http, url + "/api/generate", ""))[2] == {"error": "missing request body"}
    status, _, body = await post(http, url + "/api/generate", {"model": 5})
    assert status == 400 and "cannot unmarshal number" in body["error"]
    assert await post(http, url + "/api/generate", {"model": "nomic-embed-text", "prompt": "x"}) == (
        400,
        ctype,
        {"error": '"nomic-embed-text" does not support generate'},
    )
    assert (await post(http, url + "/api/chat", {"model": "nomic-embed-text", "messages": [{"role": "user"}]}))[2] == {
        "error": '"nomic-embed-text" does not support chat'
    }
    status, _, body = await post(http, url + "/api/generate", {"model": "llama3.2", "prompt": "x", "keep_alive": "300"})
    assert (status, body) == (400, {"error": 'time: missing unit in duration "300"'})
    ollama_sim.add_model(ModelSpec("plain", capabilities=["completion"]))
    body = {"model": "plain", "messages": [{"role": "user", "content": "x"}], "tools": [WEATHER_TOOL]}
    assert (await post(http, url + "/api/chat", body))[2] == {"error": '"plain" does not support tools'}
    assert ollama_sim.request_log[-1].body == body


async def test_stream_false_is_one_json_object(ollama_sim: OllamaSim, http: aiohttp.ClientSession) -> None:
    body = {"model": "llama3.2", "prompt": "hi", "stream": False}
    status, ctype, obj = await post(http, ollama_sim.url + "/api/generate", body)
    assert (status, ctype) == (200, "application/json; charset=utf-8") and obj["done"] is True
    async with http.post(ollama_sim.url + "/api/generate", json={"model": "llama3.2", "prompt": "hi"}) as r:
        assert r.headers["Content-Type"] == "application/x-ndjson"
        lines = await ndjson(r)
    assert "".join(line["response"] for line in lines) == obj["response"]


# ----------------------------------------------------------------- admission and failure injection
async def test_busy_when_parallel_and_queue_are_full(ollama_sim_factory: SimFactory) -> None:
    sim = await ollama_sim_factory(parallel=1, max_queue=1, latency=30)
    async with aiohttp.ClientSession() as http:
        body = {"model": "llama3.2", "prompt": "hi"}
        running = asyncio.create_task(post(http, sim.url + "/api/generate", body))
        await wait_until(lambda: sim.in_flight == 1)
        waiting = asyncio.create_task(post(http, sim.url + "/api/generate", body))
        await wait_until(lambda: sim.queued == 1)
        status, _, obj = await post(http, sim.url + "/api/generate", body)
        assert (status, obj) == (503, {"error": BUSY_MESSAGE}) and Busy().message == BUSY_MESSAGE
        assert sim.busy_rejections == 1 and sim.max_in_flight == 1
        running.cancel()
        waiting.cancel()
        await wait_until(lambda: sim.in_flight == 0 and sim.queued == 0)
    assert sim.cancelled_streams >= 1 and sim.cancelled_streams + sim.cancelled_queued == 2


async def test_parallel_slots_bound_concurrency(ollama_sim_factory: SimFactory) -> None:
    sim = await ollama_sim_factory(parallel=2, latency=0.05)
    async with connect(sim.url) as c:
        replies = await asyncio.gather(*(c.generate(model="llama3.2", prompt=f"p{i}") for i in range(5)))
        assert all(r.done for r in replies)
        assert sim.max_in_flight == 2 and sim.in_flight == 0 and sim.requests["/api/generate"] == 5


async def test_pacing_knobs_show_in_durations(ollama_sim_factory: SimFactory) -> None:
    sim = await ollama_sim_factory(token_rate=200, latency=0.05, load_latency=0.05)
    async with connect(sim.url) as c:
        first = await c.generate(model="llama3.2", prompt="hi", options={"num_predict": 11})
        assert (first.eval_duration or 0) >= 0.045e9  # 10 gaps at 200 tokens/s
        assert (first.prompt_eval_duration or 0) >= 0.045e9 and (first.load_duration or 0) >= 0.045e9
        second = await c.generate(model="llama3.2", prompt="hi", options={"num_predict": 1})
        assert (second.load_duration or 0) < 0.045e9  # already loaded


async def test_error_line_mid_stream_keeps_status_200(ollama_sim_factory: SimFactory) -> None:
    sim = await ollama_sim_factory(fail_after_tokens=3)
    async with aiohttp.ClientSession() as http:
        async with http.post(sim.url + "/api/chat", json={"model": "llama3.2", "messages": [{"role": "user"}]}) as r:
            assert r.status == 200
            lines = await ndjson(r)
        assert [line.get("done") for line in lines[:3]] == [False] * 3
        assert lines[3:] == [{"error": sim.fail_message}]
        status, _, obj = await post(
            http, sim.url + "/api/generate", {"model": "llama3.2", "prompt": "x", "stream": False}
        )
        assert (status, obj) == (500, {"error": sim.fail_message})
    async with connect(sim.url) as c:
        seen = []
        with pytest.raises(ollama.ResponseError, match="simulated failure"):
            async for chunk in await c.generate(model="llama3.2", prompt="x", stream=True):
                seen.append(chunk)
        assert len(seen) == 3 and sim.failed_streams == 3


async def test_die_mid_stream_cuts_the_connection(ollama_sim_factory: SimFactory) -> None:
    sim = await ollama_sim_factory(die_after_tokens=2)
    async with aiohttp.ClientSession() as http:
        async with http.post(sim.url + "/api/generate", json={"model": "llama3.2", "prompt": "x"}) as r:
            assert r.status == 200
            got = []
            with pytest.raises(aiohttp.ClientPayloadError):
                async for line in r.content:
                    got.append(json.loads(line))
        assert len(got) == 2 and not any(g["done"] for g in got)
    async with connect(sim.url) as c:
        with pytest.raises(httpx.HTTPError):
            async for _ in await c.generate(model="llama3.2", prompt="x", stream=True):
                pass
        assert sim.died_streams == 2 and sim.in_flight == 0 and sim.cancelled_streams == 0


async def test_client_hangup_stops_the_generation(ollama_sim_factory: SimFactory) -> None:
    sim = await ollama_sim_factory(token_rate=100)
    body = {"model": "llama3.2", "prompt": "x", "options": {"num_predict": 1000}}
    async with aiohttp.ClientSession() as http:
        r = await http.post(sim.url + "/api/generate", json=body)
        for _ in range(2):
            await r.content.readline()
        r.close()  # hang up mid-stream
    await wait_until(lambda: sim.cancelled_streams == 1 and sim.in_flight == 0)
    produced = sim.tokens_generated
    assert produced < 50
    await asyncio.sleep(0.05)  # the loop must really be gone: no tokens after the hang-up
    assert sim.tokens_generated == produced


# ----------------------------------------------------------------- fixtures and the process form
async def test_factory_sims_are_independent(ollama_sim_factory: SimFactory) -> None:
    a, b = await ollama_sim_factory.many(2, models=["llama3.2"], registry=["tinyllama"])
    assert a.url != b.url
    async with connect(a.url) as c:
        await c.pull("tinyllama")
    assert set(a.models) == {"llama3.2:latest", "tinyllama:latest"} and set(b.models) == {"llama3.2:latest"}


async def test_stop_cuts_streams_and_restart_reuses_the_port(ollama_sim_factory: SimFactory) -> None:
    sim = await ollama_sim_factory(token_rate=100)
    url = sim.url
    async with aiohttp.ClientSession() as http:
        r = await http.post(
            url + "/api/generate", json={"model": "llama3.2", "prompt": "x", "options": {"num_predict": 500}}
        )
        await r.content.readline()
        await sim.stop()
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get(url + "/api/version")
        await sim.start()
        assert sim.url == url
        async with http.get(url + "/api/version") as again:
            assert again.status == 200


async def test_process_form_exits_cleanly_on_sigterm(ollama_sim_process: SimProcessFactory) -> None:
    host = await ollama_sim_process(models=["llama3.2", "nomic-embed-text"], token_rate=200, version="0.9.9")
    async with connect(host.url) as c:
        assert (await c._client.get("/api/version")).json() == {"version": "0.9.9"}
        assert {m.model for m in (await c.list()).models} == {"llama3.2:latest", "nomic-embed-text:latest"}
        async with aiohttp.ClientSession() as http:
            r = await http.post(
                host.url + "/api/generate", json={"model": "llama3.2", "prompt": "x", "options": {"num_predict": 2000}}
            )
            await r.content.readline()
            host.terminate()
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()  # a dying host cuts its streams
        assert await host.wait() == 0
        with pytest.raises(ConnectionError):
            await c.list()


async def test_process_form_can_be_killed(ollama_sim_process: SimProcessFactory) -> None:
    host = await ollama_sim_process(models=["llama3.2"])
    host.kill()
    assert await host.wait() == -9
