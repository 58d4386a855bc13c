"""LlamaCppBackend against a real llama-server running the tiny model.

The `slow` tests talk to real llama.cpp (built once by scripts/build-llama-cpp.sh)
and compare the adapter with llama-server's own answers; nothing of llama.cpp is
mocked. The fast tests at the end cover the pure translation helpers, binary
discovery and the unreachable-server path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import math
import os
import re
import shutil
import signal
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from olol.backends.llamacpp import convert
from olol.backends.llamacpp.backend import LlamaCppBackend
from olol.backends.llamacpp.bins import LlamaBinaries, LlamaBinaryNotFound, find_llama_server
from olol.backends.llamacpp.process import LlamaServerConfig, LlamaServerProcess
from olol.cluster.backend import JSON
from olol.errors import BackendUnavailable, BadRequest, ModelNotFound
from tests.support.llama_fixtures import BackgroundLlamaServer

GREEDY = {"temperature": 0, "seed": 42}
PROMPT = "Once upon a time"


# ---------------------------------------------------------------- helpers
@pytest.fixture
async def backend(llama_server: BackgroundLlamaServer) -> AsyncIterator[LlamaCppBackend]:
    b = LlamaCppBackend(url=llama_server.url, model_path=llama_server.model_path)
    await b.start()
    try:
        yield b
    finally:
        await b.close()


async def direct(url: str, path: str, body: JSON | None = None) -> Any:
    async with aiohttp.ClientSession() as session:
        method = session.post if body is not None else session.get
        async with method(url + path, json=body) as resp:
            if path == "/metrics":
                return await resp.text()
            return await resp.json()


async def collect(chunks: AsyncIterator[JSON]) -> list[JSON]:
    return [chunk async for chunk in chunks]


async def tokens_predicted(url: str) -> float:
    for line in (await direct(url, "/metrics")).splitlines():
        if line.startswith("llamacpp:tokens_predicted_total "):
            return float(line.split()[1])
    raise AssertionError("no tokens_predicted_total in /metrics")


async def wait_all_slots_idle(url: str, timeout: float = 5.0) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    while loop.time() - start < timeout:
        if not any(slot["is_processing"] for slot in await direct(url, "/slots")):
            return loop.time() - start
        await asyncio.sleep(0.02)
    raise AssertionError("llama-server kept generating after the client went away")


# ---------------------------------------------------------------- generate
@pytest.mark.slow
async def test_greedy_generate_equals_llama_server_completion(
    backend: LlamaCppBackend, llama_server: BackgroundLlamaServer
) -> None:
    request = {"model": "tiny", "prompt": PROMPT, "raw": True, "options": {**GREEDY, "num_predict": 24}}
    chunks = await collect(backend.generate(request))
    ours = "".join(c["response"] for c in chunks)
    theirs = await direct(llama_server.url, "/completion", {"prompt": PROMPT, "n_predict": 24, **GREEDY})
    assert ours == theirs["content"] and ours
    assert chunks[-1]["eval_count"] == theirs["tokens_predicted"] == 24
    assert chunks[-1]["prompt_eval_count"] == theirs["tokens_evaluated"]
    # Same answer again, also with both slots busy at once: deterministic through the adapter.
    both = await asyncio.gather(collect(backend.generate(request)), collect(backend.generate(request)))
    assert ["".join(c["response"] for c in chunks) for chunks in both] == [ours, ours]


@pytest.mark.slow
async def test_templated_generate_uses_the_models_chat_template(
    backend: LlamaCppBackend, llama_server: BackgroundLlamaServer
) -> None:
    request = {"model": "tiny:latest", "prompt": "hi", "system": "be brief", "options": {**GREEDY, "num_predict": 12}}
    ours = "".join(c["response"] for c in await collect(backend.generate(request)))
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    prompt = (await direct(llama_server.url, "/apply-template", {"messages": messages}))["prompt"]
    assert "<|im_start|>system\nbe brief" in prompt  # the tiny model's ChatML template
    theirs = await direct(llama_server.url, "/completion", {"prompt": prompt, "n_predict": 12, **GREEDY})
    assert ours == theirs["content"]


@pytest.mark.slow
async def test_stream_chunk_shapes_and_final_stats(backend: LlamaCppBackend) -> None:
    request = {"model": "tiny", "prompt": PROMPT, "raw": True, "options": {**GREEDY, "num_predict": 16}}
    chunks = await collect(backend.generate(request))
    *body, final = chunks
    assert body and all(set(c) == {"model", "created_at", "response", "done"} for c in body)
    assert all(c["model"] == "tiny:latest" and c["done"] is False and c["response"] for c in body)
    for c in chunks:
        assert c["created_at"].endswith("Z")
        datetime.fromisoformat(c["created_at"].replace("Z", "+00:00"))
    assert final["done"] is True and final["response"] == "" and final["context"] == []
    assert final["done_reason"] == "length"
    assert final["eval_count"] == 16
    assert final["prompt_eval_count"] >= 4  # BOS + "Once upon a time"
    for key in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(final[key], int), key
    assert final["eval_duration"] > 0 and final["prompt_eval_duration"] > 0
    assert final["total_duration"] >= final["eval_duration"] + final["prompt_eval_duration"]


@pytest.mark.slow
async def test_stop_word_ends_with_done_reason_stop(backend: LlamaCppBackend) -> None:
    base = {"model": "tiny", "prompt": PROMPT, "raw": True}
    pieces = [c["response"] for c in await collect(backend.generate({**base, "options": {**GREEDY, "num_predict": 8}}))]
    stop = pieces[3].strip() or pieces[3]
    chunks = await collect(backend.generate({**base, "options": {**GREEDY, "num_predict": 8, "stop": [stop]}}))
    text = "".join(c["response"] for c in chunks)
    assert chunks[-1]["done_reason"] == "stop"
    assert stop not in text and "".join(pieces).startswith(text)


@pytest.mark.slow
async def test_empty_prompt_loads(backend: LlamaCppBackend) -> None:
    [only] = await collect(backend.generate({"model": "tiny", "prompt": ""}))
    assert only["done"] is True and only["done_reason"] == "load" and only["response"] == ""


# ---------------------------------------------------------------- chat
@pytest.mark.slow
async def test_chat_matches_llama_server_and_reports_stats(
    backend: LlamaCppBackend, llama_server: BackgroundLlamaServer
) -> None:
    messages = [{"role": "user", "content": "hello there"}]
    chunks = await collect(
        backend.chat({"model": "tiny", "messages": messages, "options": {**GREEDY, "num_predict": 10}})
    )
    *body, final = chunks
    assert all(c["message"]["role"] == "assistant" and c["done"] is False for c in body)
    ours = "".join(c["message"]["content"] for c in body)
    theirs = await direct(llama_server.url, "/v1/chat/completions", {"messages": messages, "n_predict": 10, **GREEDY})
    assert ours == theirs["choices"][0]["message"]["content"] and ours
    assert final["done"] is True and final["done_reason"] == "length"
    assert final["message"] == {"role": "assistant", "content": ""}
    assert final["eval_count"] == 10
    assert final["prompt_eval_count"] == theirs["usage"]["prompt_tokens"]
    assert final["eval_duration"] > 0 and final["prompt_eval_duration"] > 0


@pytest.mark.slow
async def test_chat_rejects_images_without_a_vision_model(backend: LlamaCppBackend) -> None:
    messages = [{"role": "user", "content": "what is this?", "images": ["iVBORw0KGgo="]}]
    with pytest.raises(BadRequest, match="images"):
        await collect(backend.chat({"model": "tiny", "messages": messages}))


@pytest.mark.slow
async def test_format_constrains_output_to_json(backend: LlamaCppBackend, llama_server: BackgroundLlamaServer) -> None:
    generated = await collect(
        backend.generate({"model": "tiny", "prompt": "x", "format": "json", "options": {**GREEDY, "num_predict": 12}})
    )
    assert "".join(c["response"] for c in generated).lstrip().startswith("{")
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    messages = [{"role": "user", "content": "x"}]
    request = {"model": "tiny", "messages": messages, "format": schema, "options": {**GREEDY, "num_predict": 16}}
    ours = "".join(c["message"]["content"] for c in await collect(backend.chat(request)))
    # llama-server's chat parser holds back an unfinished JSON value, so compare
    # with its own answer rather than with a guess at where the cut falls.
    response_format = {"type": "json_schema", "json_schema": {"name": "format", "schema": schema}}
    body = {"messages": messages, "n_predict": 16, "response_format": response_format, **GREEDY}
    theirs = (await direct(llama_server.url, "/v1/chat/completions", body))["choices"][0]["message"]["content"]
    assert ours == theirs and re.match(r'\s*\{\s*"a"', ours)


@pytest.mark.slow
async def test_llama_cpp_rejections_are_bad_requests_with_its_message(backend: LlamaCppBackend) -> None:
    too_long = {"model": "tiny", "prompt": "hello " * 400, "raw": True, "options": {"num_predict": 4}}
    with pytest.raises(BadRequest, match="exceeds the available context size"):
        await collect(backend.generate(too_long))
    with pytest.raises(BadRequest, match="temperature"):
        await collect(backend.generate({"model": "tiny", "prompt": "x", "options": {"temperature": "hot"}}))


# ---------------------------------------------------------------- embed
@pytest.mark.slow
async def test_embed_batch_gives_unit_vectors_of_model_width(backend: LlamaCppBackend) -> None:
    inputs = ["the cat sat", "on the mat", "quantum chromodynamics"]
    result = await backend.embed({"model": "tiny", "input": inputs})
    assert result["model"] == "tiny:latest"
    vectors = result["embeddings"]
    assert len(vectors) == 3 and all(len(v) == 128 for v in vectors)  # llama.embedding_length
    assert all(math.isclose(math.hypot(*v), 1.0, rel_tol=1e-4) for v in vectors)
    assert vectors[0] != vectors[1] != vectors[2]
    assert result["prompt_eval_count"] >= 9 and result["total_duration"] > 0
    single = await backend.embed({"model": "tiny", "input": "the cat sat", "dimensions": 16})
    assert len(single["embeddings"][0]) == 16
    assert math.isclose(math.hypot(*single["embeddings"][0]), 1.0, rel_tol=1e-4)


# ---------------------------------------------------------------- cancellation
@pytest.mark.slow
async def test_closing_the_stream_stops_generation_server_side(
    backend: LlamaCppBackend, llama_server: BackgroundLlamaServer
) -> None:
    # 240 tokens is most of a slot's 256-token context: long enough that a
    # generation run to the end is unmistakable in the token counter.
    request = {"model": "tiny", "prompt": PROMPT, "raw": True, "options": {**GREEDY, "num_predict": 240}}
    before = await tokens_predicted(llama_server.url)
    stream = backend.generate(request)
    received = 0
    async for _ in stream:
        received += 1
        if received == 3:
            break
    await stream.aclose()
    await wait_all_slots_idle(llama_server.url)
    generated = await tokens_predicted(llama_server.url) - before
    assert generated < 120, f"llama-server generated {generated} of 240 tokens after the client left"


@pytest.mark.slow
async def test_cancelling_the_consumer_task_stops_generation(
    backend: LlamaCppBackend, llama_server: BackgroundLlamaServer
) -> None:
    request = {"model": "tiny", "prompt": PROMPT, "raw": True, "options": {**GREEDY, "num_predict": 240}}
    before = await tokens_predicted(llama_server.url)
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in backend.generate(request):
            started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_all_slots_idle(llama_server.url)
    assert await tokens_predicted(llama_server.url) - before < 120


# ---------------------------------------------------------------- supervision
@pytest.mark.slow
async def test_killed_server_mid_stream_is_unavailable_then_restarted(
    llama_bins: LlamaBinaries, tiny_model: Path
) -> None:
    server = LlamaServerConfig(
        model_path=tiny_model,
        ctx_size=1024,
        threads=1,
        embeddings=False,
        binary=llama_bins.llama_server,
        restart_backoff=0.05,
        ready_timeout=60,
    )
    b = LlamaCppBackend(server=server)
    await b.start()
    try:
        assert b.process is not None
        old_pid = b.process.pid
        assert old_pid is not None
        request = {"model": "tiny", "prompt": PROMPT, "raw": True, "options": {**GREEDY, "num_predict": 1000}}
        stream = b.generate(request)
        with pytest.raises(BackendUnavailable, match="llama-server stopped mid-stream"):
            async for chunk in stream:
                if chunk["response"]:
                    await b.process.kill()  # SIGKILL, supervision stays on
        # The supervisor notices the exit, backs off, relaunches, waits for /health.
        async with asyncio.timeout(60):
            while b.process.restarts == 0:
                await asyncio.sleep(0.05)
        await b.process.wait_ready(60)
        assert b.process.restarts == 1 and b.process.pid not in (None, old_pid)
        again = await collect(b.generate({**request, "options": {**GREEDY, "num_predict": 4}}))
        assert again[-1]["done"] is True and again[-1]["eval_count"] == 4
        assert await b.healthy()
        supervised = b.process
    finally:
        await b.close()
    assert b.process is None
    assert not supervised.running and supervised.pid is None  # close() stopped the restarted server


@pytest.mark.slow
async def test_supervisor_gives_up_when_the_server_cannot_come_back(
    llama_bins: LlamaBinaries, tiny_model: Path, tmp_path: Path
) -> None:
    model = tmp_path / "tiny.gguf"
    try:
        os.link(tiny_model, model)
    except OSError:
        shutil.copyfile(tiny_model, model)
    config = LlamaServerConfig(model_path=model, ctx_size=256, threads=1, embeddings=False, restart_backoff=0.01)
    b = LlamaCppBackend(server=dataclasses.replace(config, binary=llama_bins.llama_server))
    await b.start()
    try:
        assert b.process is not None and b.process.pid is not None
        model.unlink()  # the running server keeps its mapping; a restart cannot load it
        os.kill(b.process.pid, signal.SIGKILL)
        async with asyncio.timeout(30):  # until the supervisor has seen the exit
            while b.process.ready:
                await asyncio.sleep(0.02)
        with pytest.raises(BackendUnavailable, match="model file not found"):
            await b.process.wait_ready(30)
        assert not await b.healthy()
        with pytest.raises(BackendUnavailable):
            await collect(b.generate({"model": "tiny", "prompt": "x"}))
    finally:
        await b.close()


@pytest.mark.slow
async def test_startup_failure_reports_llama_cpp_log(llama_bins: LlamaBinaries, tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    proc = LlamaServerProcess(LlamaServerConfig(model_path=broken, threads=1, binary=llama_bins.llama_server))
    with pytest.raises(BackendUnavailable, match="during startup") as err:
        await proc.start()
    assert "log tail" in err.value.message and "gguf" in err.value.message.lower()
    assert not proc.running
    await proc.close()


# ---------------------------------------------------------------- models
@pytest.mark.slow
async def test_unknown_model_is_not_found(backend: LlamaCppBackend) -> None:
    with pytest.raises(ModelNotFound, match='model "llama3" not found'):
        await collect(backend.generate({"model": "llama3", "prompt": "x"}))
    with pytest.raises(ModelNotFound):
        await collect(backend.chat({"model": "tiny:7b", "messages": [{"role": "user", "content": "x"}]}))
    with pytest.raises(ModelNotFound):
        await backend.embed({"model": "other", "input": "x"})
    with pytest.raises(ModelNotFound):
        await backend.show({"model": "other"})
    with pytest.raises(BadRequest, match="model is required"):
        await collect(backend.generate({"prompt": "x"}))


@pytest.mark.slow
async def test_tags_show_ps_and_info_describe_the_model(
    backend: LlamaCppBackend, llama_server: BackgroundLlamaServer
) -> None:
    path = llama_server.model_path
    [tag] = await backend.list_models()
    assert tag["name"] == tag["model"] == "tiny:latest"
    assert tag["size"] == path.stat().st_size
    assert tag["digest"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert tag["details"] == {
        "parent_model": "",
        "format": "gguf",
        "family": "llama",
        "families": ["llama"],
        "parameter_size": "9.18M",
        "quantization_level": "F32",
    }
    shown = await backend.show({"model": "tiny"})
    assert shown["model_info"]["general.architecture"] == "llama"
    assert shown["model_info"]["llama.context_length"] == 2048
    assert shown["model_info"]["llama.block_count"] == 4
    assert shown["model_info"]["tokenizer.ggml.tokens"] is None  # arrays only when verbose
    assert "<|im_start|>" in shown["template"]
    assert shown["capabilities"] == ["completion", "embedding"]
    verbose = await backend.show({"model": "tiny", "verbose": True})
    assert len(verbose["model_info"]["tokenizer.ggml.tokens"]) == 32000
    [ps] = await backend.running()
    assert ps["name"] == "tiny:latest" and ps["size_vram"] == 0
    assert ps["context_length"] == 256  # -c 512 shared by --parallel 2
    assert ps["expires_at"] > "2100"
    info = await backend.info()
    assert info.kind == "llamacpp" and info.parallel == 2 and info.version.startswith("b")
    assert info.url == llama_server.url and await backend.healthy()


@pytest.mark.slow
async def test_url_only_backend_learns_name_and_file_from_the_server(llama_server: BackgroundLlamaServer) -> None:
    b = LlamaCppBackend(url=llama_server.url)
    try:
        [tag] = await b.list_models()
        assert tag["name"] == "tiny:latest"  # from /v1/models (the --alias)
        assert tag["size"] == llama_server.model_path.stat().st_size  # /props model_path is local
        assert tag["details"]["family"] == "llama"
    finally:
        await b.close()


@pytest.mark.slow
async def test_launching_backend_names_model_after_file(llama_bins: LlamaBinaries, tiny_model: Path) -> None:
    b = LlamaCppBackend(model_path=tiny_model, ctx_size=256, threads=1, parallel=1, server_bin=llama_bins.llama_server)
    try:
        assert not await b.healthy()  # not started: healthy must not launch anything
        [tag] = await b.list_models()  # answered from the file, still without a server
        assert tag["name"] == "tiny:latest" and b.process is None
        result = await b.embed({"model": "tiny", "input": ["a"]})  # first inference starts it
        assert len(result["embeddings"][0]) == 128  # --pooling mean was chosen for a chat model
        assert b.process is not None and await b.healthy()
        models = await direct(b.process.url, "/v1/models")
        assert models["data"][0]["id"] == "tiny:latest"  # --alias is the Ollama name
    finally:
        await b.close()


# ---------------------------------------------------------------- fast: no llama-server
async def test_unreachable_server_is_backend_unavailable(unused_tcp_port: int) -> None:
    b = LlamaCppBackend(url=f"http://127.0.0.1:{unused_tcp_port}", model_name="tiny")
    try:
        with pytest.raises(BackendUnavailable, match="unreachable"):
            await collect(b.generate({"model": "tiny", "prompt": "x"}))
        assert not await b.healthy()
    finally:
        await b.close()


def test_model_names_default_to_latest() -> None:
    assert convert.normalize_model_name("tiny") == "tiny:latest"
    assert convert.normalize_model_name("tiny:q4") == "tiny:q4"
    assert convert.normalize_model_name("host:5000/ns/m") == "host:5000/ns/m:latest"


def test_options_and_format_translation() -> None:
    params = convert.sampling_params({"num_predict": 5, "temperature": 0, "stop": "x", "num_ctx": 4096, "seed": 1})
    assert params == {"n_predict": 5, "temperature": 0, "stop": ["x"], "seed": 1}
    assert convert.format_params("json", chat=False) == {"json_schema": {}}
    schema = {"type": "object"}
    assert convert.format_params(schema, chat=True)["response_format"]["json_schema"]["schema"] == schema
    with pytest.raises(BadRequest):
        convert.format_params(42, chat=True)


def test_done_reason_and_stats() -> None:
    assert convert.done_reason(stop_type="eos") == "stop"
    assert convert.done_reason(stop_type="word") == "stop"
    assert convert.done_reason(stop_type="limit") == "length"
    assert convert.done_reason(stop_type="eos", truncated=True) == "length"
    assert convert.done_reason(finish_reason="tool_calls") == "stop"
    timings = {"cache_n": 2, "prompt_n": 3, "prompt_ms": 1.5, "predicted_n": 7, "predicted_ms": 10.25}
    stats = convert.final_stats(timings, total_ns=99, load_ns=1)
    assert stats == {
        "total_duration": 99,
        "load_duration": 1,
        "prompt_eval_count": 5,
        "prompt_eval_cached_count": 2,
        "prompt_eval_duration": 1_500_000,
        "eval_count": 7,
        "eval_duration": 10_250_000,
    }


def test_tool_calls_round_trip() -> None:
    acc = convert.ToolCallAccumulator()
    acc.add([{"index": 0, "function": {"name": "get_weather", "arguments": '{"ci'}}])
    acc.add([{"index": 0, "function": {"arguments": 'ty": "Oslo"}'}}])
    calls = acc.ollama()
    assert calls == [{"function": {"index": 0, "name": "get_weather", "arguments": {"city": "Oslo"}}}]
    [assistant] = convert.chat_messages([{"role": "assistant", "content": "", "tool_calls": calls}], vision=False)
    assert assistant["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city": "Oslo"}'}


def test_binary_lookup_order_and_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLOL_LLAMA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("OLOL_LLAMA_SERVER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(LlamaBinaryNotFound, match=r"build-llama-cpp\.sh"):
        find_llama_server()
    cached = tmp_path / "cache" / "0.3.36" / "bin" / "llama-server"
    cached.parent.mkdir(parents=True)
    cached.write_text("#!/bin/sh\n")
    cached.chmod(0o755)
    assert find_llama_server() == cached.resolve()
    elsewhere = tmp_path / "custom-llama-server"
    elsewhere.write_text("#!/bin/sh\n")
    elsewhere.chmod(0o755)
    monkeypatch.setenv("OLOL_LLAMA_SERVER", str(elsewhere))
    assert find_llama_server() == elsewhere.resolve()
    assert find_llama_server(cached.parent) == cached.resolve()  # explicit beats env
    with pytest.raises(LlamaBinaryNotFound, match="not found at"):
        find_llama_server(tmp_path / "missing")
