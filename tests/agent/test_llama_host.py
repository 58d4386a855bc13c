"""A llama.cpp host as Ollama runs one, on real llama-server: settings on the running server, the model
lifecycle (load on demand, keep_alive, LRU eviction under the cap, Ollama's error), per-slot context
under concurrency, Ollama's chat truncation, think and context."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest

from olol.agent.config import AgentConfig
from olol.backends.factory import make_local_backend
from olol.backends.host_settings import HostSettings
from olol.backends.llamacpp.bins import LlamaBinaries
from olol.backends.llamacpp.host import LlamaHostBackend
from olol.backends.llamacpp.process import LlamaServerConfig
from olol.errors import BackendUnavailable, BadRequest, OlolError
from tests.proxy.helpers import proxy_over
from tests.support.agent_fixtures import start_agent

pytestmark = pytest.mark.slow

GREEDY = {"temperature": 0, "seed": 42}


async def collect(stream: Any) -> list[dict[str, Any]]:
    return [chunk async for chunk in stream]


def models_dir(tmp_path: Path, tiny_model: Path, *names: str) -> Path:
    """Several models in one directory (the tiny model under each name: one generation, real files)."""
    root = tmp_path / "gguf"
    root.mkdir(exist_ok=True)
    for name in names:
        try:
            os.link(tiny_model, root / f"{name}.gguf")
        except OSError:
            (root / f"{name}.gguf").write_bytes(tiny_model.read_bytes())
    return root


def template(root: Path, bins: LlamaBinaries, **fields: Any) -> LlamaServerConfig:
    base = {"ctx_size": 256, "threads": 1, "parallel": 1, "embeddings": False, "binary": bins.llama_server}
    return LlamaServerConfig(model_path=root, **{**base, **fields})


def llama_servers(root: Path) -> dict[str, int]:
    """What really runs: llama-server processes on a model of `root`, by model stem -> pid."""
    found = {}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = proc.info["cmdline"] or []
        if cmd and "llama-server" in Path(cmd[0]).name and "-m" in cmd:
            model = Path(cmd[cmd.index("-m") + 1])
            if model.parent == root:
                found[model.stem] = proc.info["pid"]
    return found


async def ps_names(backend: LlamaHostBackend) -> list[str]:
    return sorted(m["name"] for m in await backend.running())


async def until(predicate: Any, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def chat(model: str, text: str = "Once upon", **extra: Any) -> dict[str, Any]:
    options = {**GREEDY, "num_predict": 4}
    return {"model": model, "messages": [{"role": "user", "content": text}], "options": options, **extra}


# ---------------------------------------------------------------------- settings on the running server

async def test_every_setting_reaches_the_running_llama_server(
    tmp_path: Path, tiny_model: Path, llama_bins: LlamaBinaries
) -> None:
    root = models_dir(tmp_path, tiny_model, "a")
    settings = HostSettings(flash_attention=True, numa=True, memory_lock=True, quantize="q8_0", context_window=256,
                            debug=True, load_timeout=77.0)  # fmt: skip
    config = AgentConfig(backend="llamacpp", models_dir=str(root), llama_server_bin=str(llama_bins.llama_server),
                         threads=1, parallel=3, settings=settings, ctx_size=256)  # fmt: skip
    backend = make_local_backend(config)
    assert isinstance(backend, LlamaHostBackend)
    try:
        final = (await collect(backend.chat(chat("a"))))[-1]
        assert final["done"]
        process = backend.process
        assert process is not None and process.pid is not None
        cmdline = psutil.Process(process.pid).cmdline()
        joined = " ".join(cmdline)
        for flag in ("-c 768", "--parallel 3", "-fa on", "-ctk q8_0", "-ctv q8_0", "--numa distribute", "-lv 4",
                     "--load-mode mmap+mlock"):  # fmt: skip
            assert flag in joined, flag
        assert process.config.ready_timeout == 77.0
        async with aiohttp.ClientSession() as http, http.get(process.url + "/props") as r:
            props = await r.json()
        assert props["total_slots"] == 3
        assert props["default_generation_settings"]["n_ctx"] == 256  # per slot: what a request gets
        log = process.log_tail(400)
        assert "q8_0" in log  # llama.cpp's own account of the KV cache it allocated
        info = await backend.info()
        assert info.parallel == 3 and info.extra["settings"]["kv_cache_type"] == "q8_0"
        assert info.extra["settings"]["flash_attention"] == "true"
    finally:
        await backend.close()


# ---------------------------------------------------------------------- lifecycle

async def test_models_load_on_demand_and_unload_after_keep_alive(
    tmp_path: Path, tiny_model: Path, llama_bins: LlamaBinaries
) -> None:
    root = models_dir(tmp_path, tiny_model, "a", "b")
    backend = LlamaHostBackend(template(root, llama_bins), settings=HostSettings(keep_alive="-1"))
    await backend.start()
    try:
        assert await ps_names(backend) == [] and llama_servers(root) == {}  # nothing loaded until asked
        assert sorted(m["name"] for m in await backend.list_models()) == ["a:latest", "b:latest"]
        first = (await collect(backend.chat(chat("a"))))[-1]
        again = (await collect(backend.chat(chat("a"))))[-1]
        assert first["load_duration"] > again["load_duration"] and first["load_duration"] > 50_000_000
        await collect(backend.chat(chat("b", keep_alive="1s")))
        assert await ps_names(backend) == ["a:latest", "b:latest"]
        assert set(llama_servers(root)) == {"a", "b"}  # one llama-server per loaded model
        ps = {m["name"]: m for m in await backend.running()}
        assert ps["a:latest"]["expires_at"] > "2200"  # host default -1: never
        assert ps["b:latest"]["size"] > tiny_model.stat().st_size and ps["b:latest"]["size_vram"] == 0
        assert ps["b:latest"]["context_length"] == 256
        await until(lambda: set(llama_servers(root)) == {"a"})  # b idle for its keep_alive: gone
        assert await ps_names(backend) == ["a:latest"]
        # keep_alive 0: unloaded as soon as the request is done
        final = (await collect(backend.chat(chat("b", keep_alive=0))))[-1]
        assert final["done"] and final["load_duration"] > 0
        assert await ps_names(backend) == ["a:latest"] and set(llama_servers(root)) == {"a"}
        # Ollama's explicit unload: no messages, keep_alive 0
        unload = await collect(backend.chat({"model": "a", "messages": [], "keep_alive": 0}))
        assert unload[-1]["done_reason"] == "unload"
        assert await ps_names(backend) == [] and llama_servers(root) == {}
    finally:
        await backend.close()
    assert llama_servers(root) == {}


async def test_lru_eviction_and_ollamas_error_past_the_cap(
    tmp_path: Path, tiny_model: Path, llama_bins: LlamaBinaries
) -> None:
    root = models_dir(tmp_path, tiny_model, "a", "b", "c")
    # What one model really takes (llama.cpp's own account), and what the host estimates before loading one.
    tpl = template(root, llama_bins, ctx_size=1024)  # room for long generations that keep models busy
    probe = LlamaHostBackend(tpl, settings=HostSettings(keep_alive="-1"))
    try:
        await collect(probe.chat(chat("a")))
        held = (await probe.running())[0]["size"]
        estimate = await probe._need("c:latest", root / "c.gguf")
    finally:
        await probe.close()
    cap = int(1.5 * held) + estimate  # two fit (one loaded + one estimated), three do not
    settings = HostSettings(keep_alive="-1", max_memory=cap)
    backend = LlamaHostBackend(tpl, settings=settings)
    try:
        await collect(backend.chat(chat("a")))
        await collect(backend.chat(chat("b")))
        await collect(backend.chat(chat("a")))  # a is now the most recently used
        await collect(backend.chat(chat("c")))  # no room: b, the least recently used idle one, goes
        assert await ps_names(backend) == ["a:latest", "c:latest"]
        assert set(llama_servers(root)) == {"a", "c"}
        # Both loaded models busy: nothing can be evicted for b.
        long = {**chat("a"), "options": {**GREEDY, "num_predict": 2000}}
        busy = [asyncio.ensure_future(collect(backend.chat({**long, "model": m}))) for m in ("a", "c")]
        await until(lambda: all(m.users for m in backend.loaded()) and len(backend.loaded()) == 2)
        with pytest.raises(OlolError, match=r"^model requires more system memory \(.+\) than is available \(.+\)$"):
            await collect(backend.chat(chat("b")))
        finished = [await task for task in busy]
        assert all(chunks[-1]["done"] for chunks in finished)
        assert set(llama_servers(root)) == {"a", "c"}
    finally:
        await backend.close()


# ---------------------------------------------------------------------- issue 14: slots, truncation, think, context

async def test_eight_concurrent_long_generations_each_have_their_context(
    tmp_path: Path, tiny_model: Path, llama_bins: LlamaBinaries
) -> None:
    root = models_dir(tmp_path, tiny_model, "a")
    # 4 slots of 512 tokens; each generation needs ~450. Sharing 512 among the slots (llama-server's
    # auto mode, as before) failed with "Context size has been exceeded".
    backend = LlamaHostBackend(template(root, llama_bins, ctx_size=512, parallel=4), settings=HostSettings())
    agent = await start_agent("asyncio", backend)
    try:
        request = {"model": "a", "prompt": "Once upon a time", "options": {**GREEDY, "num_predict": 440}}
        finals = await asyncio.gather(*(collect(agent.client.generate(request)) for _ in range(8)))
        assert [f[-1]["eval_count"] for f in finals] == [440] * 8
        assert all(f[-1]["done_reason"] == "length" for f in finals)
        assert (await agent.client.info()).kind == "llamacpp"
        state = await anext(agent.client.watch_state(0.2))
        assert state["parallel_capacity"] == 4  # what the proxy routes by: the real slot count
    finally:
        await agent.client.close()
        await agent.stop()


async def test_a_chat_longer_than_the_context_drops_the_oldest_and_keeps_the_system_prompt(
    tmp_path: Path, tiny_model: Path, llama_bins: LlamaBinaries
) -> None:
    root = models_dir(tmp_path, tiny_model, "a")
    # LLAMA_SERVER_SLOTS_DEBUG: llama-server's /slots then shows the prompt a slot really ran.
    tpl = template(root, llama_bins, ctx_size=256, env={"LLAMA_SERVER_SLOTS_DEBUG": "1"})
    backend = LlamaHostBackend(tpl, settings=HostSettings())
    agent = await start_agent("asyncio", backend)
    system = {"role": "system", "content": "You are a terse storyteller."}
    turns = []
    for i in range(8):  # ~50 tokens each: 400 in all, over the slot's 256
        turns.append({"role": "user" if i % 2 == 0 else "assistant", "content": f"part {i}: " + "tell me more " * 12})
    try:
        request = {"model": "a", "messages": [system, *turns], "options": {**GREEDY, "num_predict": 4}}
        final = (await collect(agent.client.chat(request)))[-1]
        assert final["done"] and final["eval_count"] > 0  # answered, where llama-server alone refused
        trimmed = final["olol"]["trimmed"]
        assert 0 < trimmed < len(turns)
        process = backend.process
        assert process is not None
        async with aiohttp.ClientSession() as http, http.get(process.url + "/slots") as r:
            (slot,) = await r.json()
        ran = slot["prompt"]
        assert system["content"] in ran  # the system prompt was kept
        sent = [i for i in range(len(turns)) if f"part {i}:" in ran]
        assert sent == list(range(trimmed, len(turns)))  # the newest turns were sent, the oldest dropped
        assert slot["n_prompt_tokens"] < 256
        # ... and no more than needed: one more turn would not have fitted (Ollama keeps all that fit).
        longer = {**request, "messages": [system, *turns[trimmed - 1 :]]}
        assert (await collect(agent.client.chat(longer)))[-1]["olol"]["trimmed"] == 1
        # `truncate: false` crosses the agent's gRPC too: refused as Ollama refuses it, nothing dropped.
        with pytest.raises(BadRequest, match="exceeds the available context size"):
            await collect(agent.client.chat({**request, "truncate": False}))
        # A client of the proxy reads the same count on the final chunk.
        async with (
            proxy_over(agent.target) as proxy,
            aiohttp.ClientSession() as http,
            http.post(proxy.url + "/api/chat", json={**request, "stream": False}) as r,
        ):
            assert r.status == 200, await r.text()
            reply = await r.json()
        assert reply["done"] and reply["olol"]["trimmed"] == trimmed
    finally:
        await agent.client.close()
        await agent.stop()


async def test_think_context_and_load_duration(tmp_path: Path, tiny_model: Path, llama_bins: LlamaBinaries) -> None:
    root = models_dir(tmp_path, tiny_model, "a")
    backend = LlamaHostBackend(template(root, llama_bins), settings=HostSettings(), preload=False)
    agent = await start_agent("asyncio", backend)
    try:
        with pytest.raises(BadRequest, match=r'^"a" does not support thinking$'):
            await collect(agent.client.chat(chat("a", think=True)))
        with pytest.raises(BadRequest, match=r"does not support thinking"):
            await collect(agent.client.generate({"model": "a", "prompt": "hi", "think": True}))
        assert (await collect(agent.client.chat(chat("a", think=False))))[-1]["done"]
        await collect(agent.client.chat({"model": "a", "messages": [], "keep_alive": 0}))  # unload
        request = {"model": "a", "prompt": "Once upon a time", "options": {**GREEDY, "num_predict": 8}}
        chunks = await collect(agent.client.generate(request))
        final = chunks[-1]
        assert final["load_duration"] > 50_000_000  # it was loaded for this request
        assert final["total_duration"] > final["load_duration"]
        process = backend.process
        assert process is not None
        text = "".join(c["response"] for c in chunks)
        async with aiohttp.ClientSession() as http:
            async with http.post(process.url + "/apply-template", json={
                "messages": [{"role": "user", "content": request["prompt"]}]}) as r:  # fmt: skip
                prompt = (await r.json())["prompt"]
            async with http.post(process.url + "/tokenize", json={"content": prompt + text, "add_special": True}) as r:
                tokens = (await r.json())["tokens"]
        assert final["context"] == tokens and len(tokens) > final["eval_count"]
        show = await agent.client.show({"model": "a"})
        assert "thinking" not in show["capabilities"]
    finally:
        await agent.client.close()
        await agent.stop()


async def test_load_timeout_is_a_clear_error_and_leaves_nothing_running(
    tmp_path: Path, tiny_model: Path, llama_bins: LlamaBinaries
) -> None:
    root = models_dir(tmp_path, tiny_model, "a")
    settings = HostSettings(load_timeout=0.05)
    backend = LlamaHostBackend(template(root, llama_bins, **settings.llama_server_options()), settings=settings)
    try:
        with pytest.raises(BackendUnavailable, match=r"llama-server not ready after 0.05s \(load timeout\)"):
            await collect(backend.chat(chat("a")))
        assert await backend.running() == [] and llama_servers(root) == {}
    finally:
        await backend.close()
