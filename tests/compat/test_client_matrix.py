"""The compatibility matrix: third-party clients, unmodified from their registries, over every topology.

Each client is used the way its documentation shows, against the proxy's URL
only: the official `ollama` library (sync and async), `openai` on `/v1`,
`langchain-ollama`, `llama-index-llms-ollama` / `llama-index-embeddings-ollama`
and `litellm`. The topologies are in tests/compat/conftest.py; the npm
`ollama` client is in test_npm_client.py. Blocking clients run in a thread,
because the proxy serves from this test's event loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any, TypeVar

import ollama
import openai
import pytest

from tests.compat.conftest import Topology

# litellm fetches its model price list from the internet on import unless told to use the bundled copy.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

T = TypeVar("T")
HI = [{"role": "user", "content": "Hello there"}]
N = 8  # tokens per generation: cheap on one core, enough to see text


async def threaded(fn: Callable[[], T]) -> T:
    return await asyncio.wait_for(asyncio.to_thread(fn), 120)


def get_weather(city: str) -> str:
    """Get the current weather in a city.

    Args:
        city: The city's name.
    """
    return f"sunny in {city}"


# ----------------------------------------------------------------- ollama (PyPI)
async def test_ollama_python_every_method(topology: Topology) -> None:
    client = ollama.AsyncClient(host=topology.url)
    options = {"num_predict": N, "temperature": None}  # a null option, as llama-index sends them
    reply = await client.generate(model=topology.chat, prompt="Why is the sky blue?", options=options)
    assert reply.done and reply.response and reply.eval_count
    parts = [p async for p in await client.generate(model=topology.chat, prompt="hi", options=options, stream=True)]
    assert parts[-1].done and "".join(p.response or "" for p in parts)
    chat = await client.chat(model=topology.chat, messages=HI, options=options)
    assert chat.message.role == "assistant" and chat.message.content
    streamed = [p async for p in await client.chat(model=topology.chat, messages=HI, options=options, stream=True)]
    assert streamed[-1].done and "".join(p.message.content or "" for p in streamed)
    embed = await client.embed(model=topology.embed, input=["a", "b"])
    assert len(embed.embeddings) == 2 and len(embed.embeddings[0]) == topology.dim
    assert len((await client.embeddings(model=topology.embed, prompt="a")).embedding) == topology.dim
    assert topology.chat in {m.model.split(":")[0] for m in (await client.list()).models if m.model}
    assert (await client.show(topology.chat)).details
    assert any((m.model or "").startswith(topology.chat) for m in (await client.ps()).models)
    assert (await client.version()).get("version") if hasattr(client, "version") else True
    feed = [p.status async for p in await client.pull(topology.pull, stream=True)]
    assert feed[-1] == "success"
    assert (await client.copy(topology.manage, "matrix-copy")).status == "success"
    assert (await client.create(model="matrix-brief", from_=topology.manage, system="Be brief.")).status == "success"
    assert (await client.push("matrix-brief", stream=False)).status == "success"
    for name in ("matrix-copy", "matrix-brief"):
        assert (await client.delete(name)).status == "success"
    with pytest.raises(ollama.ResponseError) as missing:
        await client.chat(model="no-such-model", messages=HI)
    assert missing.value.status_code == 404

    def sync() -> tuple[str, int]:
        c = ollama.Client(host=topology.url)
        text = c.chat(model=topology.chat, messages=HI, options={"num_predict": N}).message.content or ""
        return text, len(c.embed(model=topology.embed, input="x").embeddings[0])

    text, dim = await threaded(sync)
    assert text and dim == topology.dim


async def test_ollama_python_tools(topology: Topology) -> None:
    client = ollama.AsyncClient(host=topology.url)
    ask = [{"role": "user", "content": "call get_weather for Paris"}]
    reply = await client.chat(model=topology.chat, messages=ask, tools=[get_weather], options={"num_predict": N})
    assert reply.done
    if topology.calls_tools:
        assert reply.message.tool_calls and reply.message.tool_calls[0].function.name == "get_weather"


# ----------------------------------------------------------------- openai on /v1
async def test_openai_on_v1(topology: Topology) -> None:
    oai = openai.AsyncOpenAI(base_url=topology.url + "/v1", api_key="ollama", max_retries=0)
    try:
        reply = await oai.chat.completions.create(model=topology.chat, messages=HI, max_tokens=N)  # type: ignore[arg-type]
        assert reply.choices[0].message.content and reply.usage and reply.usage.completion_tokens
        stream = await oai.chat.completions.create(model=topology.chat, messages=HI, max_tokens=N, stream=True)  # type: ignore[arg-type]
        assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        done = await oai.completions.create(model=topology.chat, prompt="Once upon a time", max_tokens=N)
        assert done.choices[0].text
        emb = await oai.embeddings.create(model=topology.embed, input=["a", "b"])
        assert len(emb.data) == 2 and len(emb.data[0].embedding) == topology.dim
        assert topology.chat in {m.id.split(":")[0] async for m in oai.models.list()}
        with pytest.raises(openai.NotFoundError):
            await oai.chat.completions.create(model="no-such-model", messages=HI)  # type: ignore[arg-type]
    finally:
        await oai.close()


# ----------------------------------------------------------------- langchain-ollama
async def test_langchain_ollama(topology: Topology) -> None:
    from langchain_core.tools import tool
    from langchain_ollama import ChatOllama, OllamaEmbeddings

    llm = ChatOllama(model=topology.chat, base_url=topology.url, num_predict=N)

    def use() -> dict[str, Any]:
        weather = tool(get_weather)
        return {
            "invoke": llm.invoke("Hello there").content,
            "stream": "".join(str(c.content) for c in llm.stream("Hello there")),
            "tools": llm.bind_tools([weather]).invoke("call get_weather for Paris"),
            "docs": OllamaEmbeddings(model=topology.embed, base_url=topology.url).embed_documents(["a", "b"]),
            "query": OllamaEmbeddings(model=topology.embed, base_url=topology.url).embed_query("a"),
        }

    got = await threaded(use)
    assert got["invoke"] and got["stream"]
    if topology.calls_tools:
        assert got["tools"].tool_calls and got["tools"].tool_calls[0]["name"] == "get_weather"
    assert len(got["docs"]) == 2 and len(got["docs"][0]) == len(got["query"]) == topology.dim
    streamed = [c async for c in llm.astream("Hello there")]
    assert "".join(str(c.content) for c in streamed)
    embeddings = await OllamaEmbeddings(model=topology.embed, base_url=topology.url).aembed_documents(["a"])
    assert len(embeddings[0]) == topology.dim


# ----------------------------------------------------------------- llama-index
async def test_llama_index(topology: Topology) -> None:
    from llama_index.core.llms import ChatMessage
    from llama_index.embeddings.ollama import OllamaEmbedding
    from llama_index.llms.ollama import Ollama

    llm = Ollama(model=topology.chat, base_url=topology.url, request_timeout=60.0,
                 additional_kwargs={"num_predict": N})
    embedder = OllamaEmbedding(model_name=topology.embed, base_url=topology.url)

    def use() -> dict[str, Any]:
        return {
            "complete": llm.complete("Hello there").text,
            "stream": "".join(r.delta or "" for r in llm.stream_complete("Hello there")),
            "chat": llm.chat([ChatMessage(role="user", content="Hello there")]).message.content,
            "stream_chat": "".join(r.delta or "" for r in llm.stream_chat([ChatMessage(role="user", content="Hi")])),
            "one": embedder.get_text_embedding("a"),
            "batch": embedder.get_text_embedding_batch(["a", "b"]),
            "query": embedder.get_query_embedding("a"),
        }

    got = await threaded(use)
    assert got["complete"] and got["stream"] and got["chat"] and got["stream_chat"]
    assert len(got["one"]) == len(got["query"]) == topology.dim and len(got["batch"]) == 2
    assert (await llm.acomplete("Hello there")).text


# ----------------------------------------------------------------- litellm
async def test_litellm(topology: Topology) -> None:
    import litellm

    def use() -> dict[str, Any]:
        common: dict[str, Any] = {"api_base": topology.url, "max_tokens": N}
        return {
            "ollama": litellm.completion(model=f"ollama/{topology.chat}", messages=HI, **common),
            "ollama_chat": litellm.completion(model=f"ollama_chat/{topology.chat}", messages=HI, **common),
            "stream": [c for c in litellm.completion(model=f"ollama/{topology.chat}", messages=HI, stream=True,
                                                      **common)],
            "stream_chat": [c for c in litellm.completion(model=f"ollama_chat/{topology.chat}", messages=HI,
                                                           stream=True, **common)],
            "embed": litellm.embedding(model=f"ollama/{topology.embed}", input=["a", "b"], api_base=topology.url),
        }

    got = await threaded(use)
    assert got["ollama"].choices[0].message.content
    assert got["ollama_chat"].choices[0].message.content
    for key in ("stream", "stream_chat"):
        assert "".join(c.choices[0].delta.content or "" for c in got[key] if c.choices), key
    data = got["embed"].data
    assert len(data) == 2 and len(data[0]["embedding"]) == topology.dim
    reply = await litellm.acompletion(model=f"ollama_chat/{topology.chat}", messages=HI, api_base=topology.url,
                                      max_tokens=N)
    assert reply.choices[0].message.content


# ----------------------------------------------------------------- nulls, as Ollama takes them
async def test_null_fields_and_options_are_skipped_at_every_layer(topology: Topology) -> None:
    import aiohttp

    nulls = {"system": None, "template": None, "context": None, "images": None, "format": None, "suffix": None,
             "keep_alive": None, "think": None, "raw": None, "truncate": None, "shift": None}
    options = {"temperature": None, "mirostat": None, "stop": None, "num_ctx": None, "num_predict": N}
    bodies = {
        "/api/generate": {"model": topology.chat, "prompt": "hi", "stream": False, "options": options, **nulls},
        "/api/chat": {"model": topology.chat, "stream": False, "options": options, "tools": None,
                      "format": None, "think": None, "keep_alive": None,
                      "messages": [{"role": "user", "content": "hi", "images": None, "tool_calls": None}]},
        "/api/embed": {"model": topology.embed, "input": ["a"], "truncate": None, "dimensions": None,
                       "keep_alive": None, "options": {"temperature": None}},
        "/api/embeddings": {"model": topology.embed, "prompt": "a", "options": None, "keep_alive": None},
    }
    async with aiohttp.ClientSession() as http:
        for path, body in bodies.items():
            async with http.post(topology.url + path, json=body) as resp:
                reply = await resp.json()
                assert resp.status == 200, (path, reply)
                assert "error" not in reply and "NoneType" not in str(reply)


async def test_a_pull_feed_repeats_no_line(topology: Topology) -> None:
    import aiohttp

    # Agents try each quantization of it (smart quantization) before pulling: each try's notes come once.
    async with aiohttp.ClientSession() as http, \
            http.post(topology.url + "/api/pull", json={"model": topology.pull}) as r:
        lines = (await r.read()).splitlines()
    assert lines and b'"success"' in lines[-1]
    assert len(lines) == len(set(lines)), [line for line in lines if lines.count(line) > 1][:3]
