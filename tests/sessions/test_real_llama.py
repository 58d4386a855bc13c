"""Sessions on REAL llama.cpp hosts (tiny model): agents over the shared llama-server, behind a proxy.

Each agent's backend is the real `LlamaCppBackend` with a recorder in front of
`chat`, so a test can assert exactly which messages the model was given.
Lean on purpose (two shared cores): greedy, a few tokens a reply.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import ollama
import pytest

from olol.aio import AsyncOllamaClient
from olol.backends.llamacpp.backend import LlamaCppBackend
from olol.cluster.backend import JSON
from olol.sync import OllamaClient
from tests.proxy.helpers import proxy_over
from tests.sessions.helpers import create, get, reply_text, say, transcript
from tests.support.agent_fixtures import RunningAgent, start_agent
from tests.support.llama_fixtures import BackgroundLlamaServer

pytestmark = pytest.mark.slow

GREEDY: dict[str, Any] = {"temperature": 0, "seed": 42}
TINY = "tiny"


class RecordingLlama(LlamaCppBackend):
    """The real backend; `chats` keeps the messages of every chat it was asked for."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.chats: list[list[dict[str, str]]] = []

    def chat(self, request: JSON) -> AsyncIterator[JSON]:
        self.chats.append([{"role": m["role"], "content": m["content"]} for m in request.get("messages") or []])
        return super().chat(request)


AgentStarter = Callable[[], Awaitable[tuple[RunningAgent, RecordingLlama]]]


@pytest.fixture
async def llama_agent(llama_server: BackgroundLlamaServer) -> AsyncIterator[AgentStarter]:
    started: list[RunningAgent] = []

    async def start() -> tuple[RunningAgent, RecordingLlama]:
        backend = RecordingLlama(url=llama_server.url, model_path=llama_server.model_path)
        agent = await start_agent("asyncio", backend)
        started.append(agent)
        return agent, backend

    yield start
    for agent in started:
        await agent.client.close()
        await agent.stop()


async def test_multi_turn_session_the_model_sees_the_whole_conversation(llama_agent: AgentStarter) -> None:
    """One conversation, three clients: the session API, then the official `ollama` AsyncClient and Client."""
    agent, llama = await llama_agent()
    async with proxy_over(agent.target) as proxy, aiohttp.ClientSession() as http:
        session = await create(
            http, proxy.url, model=TINY, system="You are a tiny model.", options={**GREEDY, "num_predict": 6}
        )
        lines, headers = await say(http, proxy.url, session["id"], "Hello there")
        assert lines[-1]["done"] and headers["X-OLOL-Host"] == agent.target
        prompts = [lines[-1]["prompt_eval_count"]]
        # Ollama's own clients, unchanged, with the session as their host: they send only the new message.
        host = f"{proxy.url}/api/sessions/{session['id']}"
        second = await ollama.AsyncClient(host=host).chat(TINY, [{"role": "user", "content": "How are you?"}])
        third = await asyncio.to_thread(
            ollama.Client(host=host).chat, TINY, [{"role": "user", "content": "Tell me more"}]
        )
        assert second.done and third.done
        prompts += [second.prompt_eval_count, third.prompt_eval_count]
        stored = await get(http, proxy.url, session["id"])
    history = transcript(stored)
    assert [m["role"] for m in history] == ["system"] + ["user", "assistant"] * 3
    assert history[4]["content"] == second.message.content and history[6]["content"] == third.message.content
    # Turn k was given the system prompt, every earlier turn, then its question: the whole conversation.
    assert llama.chats == [history[:2], history[:4], history[:6]]
    assert prompts == sorted(prompts) and len(set(prompts)) == 3  # llama.cpp read a longer prompt each turn
    assert all(m["tokens"] > 0 and not m["tokens_estimated"] for m in stored["messages"] if m["role"] == "assistant")


async def test_python_clients_over_http_and_grpc_on_llama(llama_agent: AgentStarter) -> None:
    agent, llama = await llama_agent()
    async with proxy_over(agent.target, grpc_port=0) as proxy:
        grpc_port = proxy.context.sessions.grpc_port  # type: ignore[union-attr]
        async with AsyncOllamaClient(host="127.0.0.1", port=grpc_port) as client:  # over gRPC
            chat = client.session(TINY, options={**GREEDY, "num_predict": 5})
            first = await chat.ask("One")
            second = "".join([r.message.content async for r in chat.chat("Two")])
            assert first.done and first.eval_count == 5 and second
            session_id = chat.id

        def resume() -> list[tuple[str, str]]:  # the blocking client, over HTTP, picks up the same session
            with OllamaClient(url=proxy.url) as sync_client:
                same = sync_client.session(TINY, session_id=session_id)
                assert same.ask("Three", options={**GREEDY, "num_predict": 5}).done
                return [(m.role, m.content) for m in same.history()]

        history = await asyncio.to_thread(resume)
    assert [text for _, text in history] == ["One", first.message.content, "Two", second, "Three", history[-1][1]]
    assert llama.chats[-1] == [{"role": r, "content": t} for r, t in history[:-1]]


async def test_trimming_keeps_a_long_conversation_going_on_llama(llama_agent: AgentStarter) -> None:
    agent, llama = await llama_agent()
    async with proxy_over(agent.target) as proxy, aiohttp.ClientSession() as http:
        # No num_ctx: the window is what the host reports for the loaded model (llama-server's -c per slot).
        session = await create(http, proxy.url, model=TINY, system="Be brief.", options={**GREEDY, "num_predict": 24})
        finals = []
        for i in range(12):
            lines, _ = await say(http, proxy.url, session["id"], f"This is message number {i}, please reply.")
            assert lines[-1]["done"], lines[-1]
            finals.append(lines[-1])
        stored = await get(http, proxy.url, session["id"])
        # The whole history sent at once is more than a slot can take: the host trims a plain chat too (issue 14,
        # as Ollama's chatPrompt does) and answers, saying how many messages it left out.
        async with http.post(
            proxy.url + "/api/chat",
            json={"model": TINY, "messages": transcript(stored), "stream": False, "options": GREEDY},
        ) as r:
            untrimmed = r.status, await r.json()
    window = finals[0]["olol"]["context_length"]
    assert 0 < window <= 512
    assert finals[0]["olol"]["trimmed"] == 0 and finals[-1]["olol"]["trimmed"] > 0
    assert all(f["prompt_eval_count"] + 24 <= window for f in finals)  # llama.cpp's own count of what it read
    assert all(chat[0] == {"role": "system", "content": "Be brief."} for chat in llama.chats)
    assert stored["message_count"] == 25
    # Issue 14 changed this: a chat longer than the context was a 400 ("exceeds the available context size").
    status, answer = untrimmed
    assert status == 200 and answer["done"], answer
    assert 0 < answer["olol"]["trimmed"] < 25 and answer["prompt_eval_count"] < window
    assert llama.chats[-1] == transcript(stored)  # the backend was given it all and trimmed it itself


async def test_host_death_moves_a_session_between_llama_agents(llama_agent: AgentStarter) -> None:
    (one, llama_one), (two, llama_two) = await llama_agent(), await llama_agent()
    recorders = {one.target: llama_one, two.target: llama_two}
    async with proxy_over(one.target, two.target) as proxy, aiohttp.ClientSession() as http:
        session = await create(http, proxy.url, model=TINY, options={**GREEDY, "num_predict": 4})
        _, headers = await say(http, proxy.url, session["id"], "Who am I?")
        home = headers["X-OLOL-Host"]
        doomed = one if home == one.target else two
        await doomed.stop()  # the agent is gone: connections refused
        lines, headers = await say(http, proxy.url, session["id"], "Still there?")
        stored = await get(http, proxy.url, session["id"])
    survivor = headers["X-OLOL-Host"]
    assert survivor != home and lines[-1]["done"] and stored["host"] == survivor
    assert recorders[survivor].chats[-1] == transcript(stored)[:-1]
    assert reply_text(lines) == transcript(stored)[-1]["content"]
