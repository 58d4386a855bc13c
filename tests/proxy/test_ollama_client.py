"""The official `ollama` clients, unchanged, against the proxy over two simulated hosts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import ollama
import pytest

from tests.proxy.helpers import proxy_over
from tests.support.ollama_sim import OllamaSim


@pytest.fixture
async def two_hosts(ollama_sim_factory):  # type: ignore[no-untyped-def]
    return await ollama_sim_factory.many(2)


async def test_generate_stream_and_not(two_hosts: list[OllamaSim]) -> None:
    async with proxy_over(*two_hosts) as proxy:
        client = ollama.AsyncClient(host=proxy.url)
        reply = await client.generate(model="llama3.2", prompt="hello")
        assert reply.done and reply.response and reply.model == "llama3.2" and reply.eval_count
        parts = [p async for p in await client.generate(model="llama3.2", prompt="hello", stream=True)]
        assert parts[-1].done and "".join(p.response or "" for p in parts) == reply.response


async def test_chat_stream_tools_and_thinking(two_hosts: list[OllamaSim]) -> None:
    async with proxy_over(*two_hosts) as proxy:
        client = ollama.AsyncClient(host=proxy.url)
        messages = [{"role": "user", "content": "hi"}]
        reply = await client.chat(model="llama3.2", messages=messages)
        streamed = [p async for p in await client.chat(model="llama3.2", messages=messages, stream=True)]
        assert "".join(p.message.content or "" for p in streamed) == reply.message.content
        tool = {"type": "function", "function": {"name": "get_weather", "description": "weather",
                                                 "parameters": {"type": "object", "properties": {}}}}
        called = await client.chat(model="llama3.2", messages=[{"role": "user", "content": "call get_weather"}],
                                   tools=[tool])
        assert called.message.tool_calls and called.message.tool_calls[0].function.name == "get_weather"
        thought = await client.chat(model="qwen3:0.6b", messages=messages, think=True)
        assert thought.message.thinking


async def test_embed_and_legacy_embeddings(two_hosts: list[OllamaSim]) -> None:
    async with proxy_over(*two_hosts) as proxy:
        client = ollama.AsyncClient(host=proxy.url)
        embed = await client.embed(model="nomic-embed-text", input=["a", "b"])
        assert len(embed.embeddings) == 2 and len(embed.embeddings[0]) == 768
        legacy = await client.embeddings(model="nomic-embed-text", prompt="a")
        assert len(legacy.embedding) == 768


async def test_list_and_ps_are_merged_with_hosts(two_hosts: list[OllamaSim]) -> None:
    two_hosts[1].add_model("phi3:mini")
    async with proxy_over(*two_hosts) as proxy:
        client = ollama.AsyncClient(host=proxy.url)
        names = sorted(m.model or "" for m in (await client.list()).models)
        assert names == ["llama3.2:1b-q8_0", "llama3.2:latest", "nomic-embed-text:latest", "phi3:mini",
                         "qwen3:0.6b"]
        await client.generate(model="llama3.2", prompt="x")
        assert [m.model for m in (await client.ps()).models] == ["llama3.2:latest"]
        async with aiohttp.ClientSession() as http, http.get(proxy.url + "/api/tags") as resp:
            where = {m["name"]: m["olol"]["hosts"] for m in (await resp.json())["models"]}
        assert where["phi3:mini"] == [two_hosts[1].url]
        assert sorted(where["llama3.2:latest"]) == sorted(s.url for s in two_hosts)


async def test_show(two_hosts: list[OllamaSim]) -> None:
    async with proxy_over(*two_hosts) as proxy:
        client = ollama.AsyncClient(host=proxy.url)
        shown = await client.show("llama3.2")
        assert shown.details and shown.details.quantization_level == "Q4_0"
        with pytest.raises(ollama.ResponseError) as info:
            await client.show("nope")
        assert info.value.status_code == 404


async def test_pull_goes_to_every_host_by_default(two_hosts: list[OllamaSim]) -> None:
    async with proxy_over(*two_hosts) as proxy:
        client = ollama.AsyncClient(host=proxy.url)
        progress = [p async for p in await client.pull("qwen2.5:0.5b", stream=True)]
        assert progress[0].status == "pulling manifest" and progress[-1].status == "success"
        assert all("qwen2.5:0.5b" in {m.name for m in s.models.values()} for s in two_hosts)
        assert (await client.pull("all-minilm", stream=False)).status == "success"


async def test_pull_replicas_limits_the_fan_out(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    sims = await ollama_sim_factory.many(3)
    async with proxy_over(*sims, replicas=2) as proxy:
        await ollama.AsyncClient(host=proxy.url).pull("qwen2.5:0.5b")
        assert sum(s.requests["/api/pull"] for s in sims) == 2


async def test_push_copy_delete(two_hosts: list[OllamaSim]) -> None:
    async with proxy_over(*two_hosts) as proxy:
        client = ollama.AsyncClient(host=proxy.url)
        assert (await client.push("llama3.2", stream=False)).status == "success"
        assert sum(s.requests["/api/push"] for s in two_hosts) == 1  # the registry needs it once
        assert (await client.copy("llama3.2", "mine")).status == "success"
        assert all("mine:latest" in s.models for s in two_hosts)
        assert "mine:latest" in {m.model for m in (await client.list()).models}
        assert (await client.delete("mine")).status == "success"
        assert not any("mine:latest" in s.models for s in two_hosts)
        with pytest.raises(ollama.ResponseError) as info:
            await client.delete("mine")
        assert info.value.status_code == 404


async def test_create_from_model_and_from_uploaded_blob(two_hosts: list[OllamaSim], tmp_path: Path) -> None:
    async with proxy_over(*two_hosts) as proxy:
        client = ollama.AsyncClient(host=proxy.url)
        made = await client.create(model="brief", from_="llama3.2", system="Be brief.")
        assert made.status == "success"
        assert all("brief:latest" in s.models for s in two_hosts)
        weights = tmp_path / "tiny.gguf"
        weights.write_bytes(b"GGUF" + bytes(range(256)) * 4)
        digest = await client.create_blob(weights)
        statuses = [p.status async for p in await client.create(model="tiny", files={"tiny.gguf": digest},
                                                                  stream=True)]
        assert statuses[-1] == "success"
        assert all("tiny:latest" in s.models for s in two_hosts)
        reply = await client.generate(model="tiny", prompt="hi")
        assert reply.done


async def test_sync_client_works_too(two_hosts: list[OllamaSim]) -> None:
    async with proxy_over(*two_hosts) as proxy:

        def use_sync() -> tuple[str, int, str]:
            client = ollama.Client(host=proxy.url)
            text = client.chat(model="llama3.2", messages=[{"role": "user", "content": "hi"}]).message.content
            models = len(client.list().models)
            status = client.pull("qwen2.5:0.5b").status or ""
            client.embed(model="nomic-embed-text", input="x")
            client.show("llama3.2")
            client.ps()
            return text or "", models, status

        text, models, status = await asyncio.to_thread(use_sync)
        assert text and models == 4 and status == "success"


async def test_root_version_and_head(two_hosts: list[OllamaSim]) -> None:
    async with proxy_over(*two_hosts) as proxy, aiohttp.ClientSession() as http:
        async with http.get(proxy.url + "/") as resp:
            assert await resp.text() == "Ollama is running"
        async with http.head(proxy.url + "/") as resp:
            assert resp.status == 200
        async with http.head(proxy.url + "/api/tags") as resp:
            assert resp.status == 200
        async with http.get(proxy.url + "/api/version") as resp:
            assert (await resp.json())["version"] == "0.12.6"
