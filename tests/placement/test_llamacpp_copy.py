"""LAN copies with real llama.cpp hosts: a GGUF from one host's model dir to another's, and into Ollama."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from olol.backends.llamacpp.backend import LlamaCppBackend
from olol.backends.llamacpp.bins import LlamaBinaries
from olol.backends.llamacpp.host import LlamaHostBackend
from olol.backends.llamacpp.process import LlamaServerConfig
from olol.backends.ollama.backend import OllamaBackend
from olol.transfer.client import TransferClient
from tests.proxy.helpers import ndjson, proxy_over
from tests.support.agent_fixtures import start_agent
from tests.support.llama_fixtures import BackgroundLlamaServer

pytestmark = pytest.mark.slow

GREEDY = {"temperature": 0, "seed": 42}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def _completion(url: str, prompt: str) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.post(url + "/completion", json={"prompt": prompt, "n_predict": 8, **GREEDY}) as r,
    ):
        return (await r.json())["content"]


async def test_gguf_copied_between_llamacpp_hosts_serves_the_same_tokens(
    llama_server: BackgroundLlamaServer,
    llama_bins: LlamaBinaries,
    tiny_model: Path,
    ollama_sim_factory,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    # Both agents front the shared llama-server (a llama.cpp host serves one model; the destination's
    # is named "other" here); what differs is their model directories: only the source's has the tiny model.
    src = await start_agent(
        "asyncio", LlamaCppBackend(url=llama_server.url, model_path=tiny_model), models_dir=str(tiny_model.parent)
    )
    dst = await start_agent(
        "threaded", LlamaCppBackend(url=llama_server.url, model_name="other"), models_dir=str(tmp_path / "gguf")
    )
    ollama_sim = await ollama_sim_factory(models=[], registry=[])
    to_ollama = await start_agent("asyncio", OllamaBackend(ollama_sim.url), transfer_dir=str(tmp_path / "staging"))
    name = tiny_model.stem
    try:
        # Through the proxy, placed exactly on the llama.cpp host that lacks it.
        async with proxy_over(src.target, dst.target, to_ollama.target) as proxy, aiohttp.ClientSession() as http:
            async with http.post(proxy.url + "/api/pull", json={"model": name, "hosts": [dst.target]}) as r:
                final = (await ndjson(r))[-1]
            assert final["status"] == "success", final
            assert final["olol"]["via"] == {dst.target: f"copy from {src.target}"}
        copied = tmp_path / "gguf" / tiny_model.name
        assert _sha(copied) == _sha(tiny_model)
        assert not list((tmp_path / "gguf" / ".olol-partial").glob("*"))
        # The copy is a working model: a llama-server of its own gives the same greedy tokens.
        backend = LlamaCppBackend(
            model_path=copied, ctx_size=256, threads=1, parallel=1, server_bin=llama_bins.llama_server
        )
        await backend.start()
        try:
            assert backend.process is not None
            await backend.process.wait_ready(120)
            assert await _completion(backend.process.url, "Once upon") == await _completion(
                llama_server.url, "Once upon"
            )
        finally:
            await backend.close()
        # A GGUF from a llama.cpp host also becomes an Ollama model elsewhere (/api/blobs + /api/create).
        async with TransferClient(to_ollama.target) as client:
            lines = [line async for line in client.fetch(src.target, name)]
        assert lines[-1]["status"] == "success"
        digest = "sha256:" + _sha(tiny_model)
        assert ollama_sim.blobs[digest] == tiny_model.read_bytes()
        assert f"{name}:latest" in ollama_sim.models
    finally:
        for agent in (src, dst, to_ollama):
            await agent.client.close()
            await agent.stop()


async def test_a_gguf_copied_to_a_running_llamacpp_host_is_served_without_a_restart(
    llama_server: BackgroundLlamaServer, llama_bins: LlamaBinaries, tiny_model: Path, tmp_path: Path
) -> None:
    # The destination supervises its own llama-server, started on another model of its directory.
    models = tmp_path / "gguf"
    models.mkdir()
    first = models / "first.gguf"
    shutil.copyfile(tiny_model, first)
    src = await start_agent(
        "asyncio", LlamaCppBackend(url=llama_server.url, model_path=tiny_model), models_dir=str(tiny_model.parent)
    )
    backend = LlamaHostBackend(
        LlamaServerConfig(model_path=first, ctx_size=256, threads=1, parallel=1, binary=llama_bins.llama_server),
        models_dir=models,
    )
    dst = await start_agent("threaded", backend, models_dir=str(models))
    name = tiny_model.stem
    try:
        before = {m["name"] for m in await dst.client.list_models()}
        assert before == {"first:latest"}
        async with proxy_over(src.target, dst.target) as proxy, aiohttp.ClientSession() as http:
            async with http.post(proxy.url + "/api/pull", json={"model": name, "hosts": [dst.target]}) as r:
                final = (await ndjson(r))[-1]
            assert final["status"] == "success", final
            assert final["olol"]["via"] == {dst.target: f"copy from {src.target}"}
        # Same agent, same process: the new file is listed and served by name.
        assert {m["name"] for m in await dst.client.list_models()} == {"first:latest", f"{name}:latest"}
        request = {
            "model": name,
            "messages": [{"role": "user", "content": "Once upon"}],
            "options": {**GREEDY, "num_predict": 8},
        }
        lines = [line async for line in dst.client.chat(request)]
        assert lines[-1]["done"] and lines[-1]["model"] == f"{name}:latest"
        assert "".join(line["message"]["content"] for line in lines)
        assert backend.process is not None and backend.process.config.model_path == models / tiny_model.name
        # And back: the first model is still served, on request.
        lines = [line async for line in dst.client.chat({**request, "model": "first"})]
        assert lines[-1]["done"] and lines[-1]["model"] == "first:latest"
    finally:
        for agent in (src, dst):
            await agent.client.close()
            await agent.stop()
        await backend.close()
