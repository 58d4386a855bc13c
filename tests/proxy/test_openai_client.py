"""The `openai` client against the proxy's `/v1` endpoints."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import pytest

from tests.proxy.helpers import proxy_over
from tests.support.ollama_sim import OllamaSim


@pytest.fixture
async def two_hosts(ollama_sim_factory):  # type: ignore[no-untyped-def]
    return await ollama_sim_factory.many(2)


def client(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url + "/v1", api_key="ollama", max_retries=0)


async def test_chat_completions_non_stream_and_stream(two_hosts: list[OllamaSim]) -> None:
    async with proxy_over(*two_hosts) as proxy:
        oai = client(proxy.url)
        messages: list[Any] = [{"role": "user", "content": "hello"}]
        reply = await oai.chat.completions.create(model="llama3.2", messages=messages)
        assert reply.choices[0].message.content and reply.choices[0].finish_reason == "stop"
        assert reply.model == "llama3.2" and reply.usage and reply.usage.completion_tokens > 0
        stream = await oai.chat.completions.create(model="llama3.2", messages=messages, stream=True,
                                                   stream_options={"include_usage": True})
        chunks = [c async for c in stream]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == reply.choices[0].message.content
        assert chunks[-1].usage is not None and chunks[-2].choices[0].finish_reason == "stop"
        await oai.close()


async def test_chat_tool_calls(two_hosts: list[OllamaSim]) -> None:
    async with proxy_over(*two_hosts) as proxy:
        oai = client(proxy.url)
        tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
        reply = await oai.chat.completions.create(
            model="llama3.2", messages=[{"role": "user", "content": "call get_weather"}], tools=tools)  # type: ignore[arg-type]
        assert reply.choices[0].finish_reason == "tool_calls"
        assert reply.choices[0].message.tool_calls[0].function.name == "get_weather"  # type: ignore[index,union-attr]
        await oai.close()


async def test_completions(two_hosts: list[OllamaSim]) -> None:
    async with proxy_over(*two_hosts) as proxy:
        oai = client(proxy.url)
        reply = await oai.completions.create(model="llama3.2", prompt="once upon", max_tokens=4)
        assert reply.choices[0].text and reply.choices[0].finish_reason == "length"
        stream = await oai.completions.create(model="llama3.2", prompt="once upon", max_tokens=4, stream=True)
        assert "".join([c.choices[0].text async for c in stream]) == reply.choices[0].text
        await oai.close()


async def test_embeddings_default_base64_and_float(two_hosts: list[OllamaSim]) -> None:
    async with proxy_over(*two_hosts) as proxy:
        oai = client(proxy.url)
        packed = await oai.embeddings.create(model="nomic-embed-text", input=["a", "b"])
        plain = await oai.embeddings.create(model="nomic-embed-text", input="a", encoding_format="float")
        assert len(packed.data) == 2 and len(packed.data[0].embedding) == 768
        assert packed.data[0].embedding == pytest.approx(plain.data[0].embedding, rel=1e-6)
        await oai.close()


async def test_models_list_and_retrieve(two_hosts: list[OllamaSim]) -> None:
    async with proxy_over(*two_hosts) as proxy:
        oai = client(proxy.url)
        ids = sorted([m.id async for m in oai.models.list()])
        assert "llama3.2:latest" in ids and len(ids) == 4
        assert (await oai.models.retrieve("llama3.2")).id == "llama3.2:latest"
        with pytest.raises(openai.NotFoundError):
            await oai.models.retrieve("nope")
        await oai.close()


async def test_errors_are_openai_shaped(two_hosts: list[OllamaSim]) -> None:
    async with proxy_over(*two_hosts) as proxy:
        oai = client(proxy.url)
        with pytest.raises(openai.NotFoundError) as info:
            await oai.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
        assert "model 'nope' not found" in str(info.value)
        async with aiohttp.ClientSession() as http, \
                http.post(proxy.url + "/v1/chat/completions", json={"model": "llama3.2"}) as resp:
            assert resp.status == 400
            body = await resp.json()
        assert set(body["error"]) == {"message", "type", "param", "code"}
        assert body["error"]["type"] == "invalid_request_error"
        await oai.close()
