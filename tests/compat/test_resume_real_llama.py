"""Resume on REAL llama.cpp (issue 15): a host dies halfway through a greedy answer, the client never notices.

Two agents serve the tiny model, each over its own llama-server; the one that breaks is tier 0,
so every request starts there. It breaks after half the reference answer's chunks: its
llama-server is SIGKILLed, or (separately) the whole agent process is. The proxy continues on
the other host from the exact token ids relayed so far, so the client's text must equal the
uninterrupted answer byte for byte, through the official `ollama` client (chat and generate,
streaming and whole) and the `openai` client on `/v1`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import ollama
import openai
import pytest

from olol.backends.llamacpp.backend import LlamaCppBackend
from olol.backends.llamacpp.bins import LlamaBinaries
from olol.backends.llamacpp.process import LlamaServerConfig
from olol.proxy import RunningProxy
from tests.proxy.helpers import ndjson, proxy_over
from tests.support.agent_fixtures import RunningAgent, start_agent
from tests.support.interrupted_llama import InterruptedLlama

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
GREEDY: dict[str, Any] = {"temperature": 0, "seed": 42, "num_predict": 128}
MESSAGES = [{"role": "user", "content": "Tell me a long story about a river."}]
PROMPT = "Once upon a time, by the river,"


def _backend(cls: type[LlamaCppBackend], tiny_model: Path, bins: LlamaBinaries, **extra: Any) -> Any:
    return cls(model_path=tiny_model, model_name="tiny", server_bin=bins.llama_server, ctx_size=1024, threads=1,
               parallel=1, embeddings=False, **extra)


def _breaking_backend(tiny_model: Path, bins: LlamaBinaries) -> InterruptedLlama:
    """The host that breaks: killed once per case, so its supervisor must restart it quickly, every time.

    Two slots: its agent's state feed may count a killed stream for a moment, which must not make the
    router pass it over for the next case.
    """
    config = LlamaServerConfig(model_path=tiny_model, alias="tiny", ctx_size=1024, threads=1, parallel=2,
                               embeddings=False, binary=bins.llama_server, max_restarts=50, restart_backoff=0.1,
                               max_backoff=0.5)
    return InterruptedLlama(after=1, server=config, model_name="tiny")


@contextlib.asynccontextmanager
async def _agents(tiny_model: Path, llama_bins: LlamaBinaries) -> AsyncIterator[
        tuple[RunningAgent, InterruptedLlama, RunningAgent]]:
    breaking = _breaking_backend(tiny_model, llama_bins)
    agents = [await start_agent("asyncio", breaking),
              await start_agent("asyncio", _backend(LlamaCppBackend, tiny_model, llama_bins))]
    try:
        yield agents[0], breaking, agents[1]
    finally:
        for agent in agents:  # stopping an agent closes its backend, and so its llama-server
            await agent.client.close()
            await agent.stop()


async def _reference(agent: RunningAgent, kind: str) -> tuple[str, int, int]:
    """The uninterrupted greedy answer from the healthy host alone: text, chunks, eval_count."""
    if kind == "chat":
        chunks = [c async for c in agent.client.chat({"model": "tiny", "messages": MESSAGES, "options": GREEDY})]
        text = "".join(c["message"]["content"] for c in chunks)
    else:
        chunks = [c async for c in agent.client.generate({"model": "tiny", "prompt": PROMPT, "options": GREEDY})]
        text = "".join(c["response"] for c in chunks)
    return text, len(chunks) - 1, int(chunks[-1]["eval_count"])


async def _ask(proxy: RunningProxy, client: str, kind: str, stream: bool) -> tuple[str, int]:
    """The answer through a client: text and eval_count (the clients drop the final chunk's `olol` object)."""
    if client == "openai":
        oai = openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key="unused")
        if kind == "chat":
            if stream:
                parts = [c async for c in await oai.chat.completions.create(
                    model="tiny", messages=MESSAGES, max_tokens=128, temperature=0, seed=42, stream=True,  # type: ignore[arg-type]
                    stream_options={"include_usage": True})]
                usage = next(c.usage for c in reversed(parts) if c.usage)
                text = "".join(c.choices[0].delta.content or "" for c in parts if c.choices)
                return text, usage.completion_tokens
            reply = await oai.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=128,  # type: ignore[arg-type]
                                                      temperature=0, seed=42)
            assert reply.usage is not None
            return reply.choices[0].message.content or "", reply.usage.completion_tokens
        done = await oai.completions.create(model="tiny", prompt=PROMPT, max_tokens=128, temperature=0, seed=42)
        assert done.usage is not None
        return done.choices[0].text, done.usage.completion_tokens
    native = ollama.AsyncClient(host=proxy.url)
    if kind == "chat":
        if stream:
            parts = [p async for p in await native.chat(model="tiny", messages=MESSAGES, options=GREEDY, stream=True)]
            return "".join(p.message.content or "" for p in parts), parts[-1].eval_count or 0
        whole = await native.chat(model="tiny", messages=MESSAGES, options=GREEDY)
        return whole.message.content or "", whole.eval_count or 0
    if stream:
        pieces = [p async for p in await native.generate(model="tiny", prompt=PROMPT, options=GREEDY, stream=True)]
        return "".join(p.response for p in pieces), pieces[-1].eval_count or 0
    answer = await native.generate(model="tiny", prompt=PROMPT, options=GREEDY)
    return answer.response, answer.eval_count or 0


async def _ready_again(proxy: RunningProxy, agent: RunningAgent, backend: LlamaCppBackend) -> None:
    """The killed llama-server is restarted by its supervisor; wait until the host serves again."""
    host = proxy.context.cluster.hosts[agent.target]
    async with asyncio.timeout(60):
        while not (backend.process is not None and backend.process.ready and host.healthy and not host.loading
                   and host.in_flight == 0):
            await asyncio.sleep(0.05)


CASES = [("ollama", "chat", True), ("ollama", "chat", False), ("ollama", "generate", True),
         ("ollama", "generate", False), ("openai", "chat", True), ("openai", "chat", False),
         ("openai", "generate", False)]


async def test_killing_llama_server_mid_answer_resumes_byte_for_byte(tiny_model: Path,
                                                                    llama_bins: LlamaBinaries) -> None:
    async with _agents(tiny_model, llama_bins) as (breaking, backend, healthy):
        references = {kind: await _reference(healthy, kind) for kind in ("chat", "generate")}
        tiers = {breaking.target: 0, healthy.target: 1}
        async with proxy_over(breaking.target, healthy.target, host_tiers=tiers, affinity=False) as proxy:
            for client, kind, stream in CASES:
                text, tokens, expected = references[kind]
                assert tokens > 8, "the reference answer is too short to break in the middle"
                await _ready_again(proxy, breaking, backend)
                backend.after, backend.armed = tokens // 2, True
                backend.broke.clear()
                got, count = await _ask(proxy, client, kind, stream)
                where = f"{client} {kind} stream={stream}"
                assert backend.broke.is_set(), where
                assert got == text, where  # byte for byte: nothing repeated, nothing missing
                assert count == expected, where  # the counts cover the whole answer


async def test_killing_the_agent_mid_answer_resumes_byte_for_byte(tiny_model: Path,
                                                                  llama_bins: LlamaBinaries) -> None:
    healthy = await start_agent("asyncio", _backend(LlamaCppBackend, tiny_model, llama_bins))
    try:
        for client, kind, stream in [("ollama", "chat", True), ("ollama", "generate", False),
                                     ("openai", "chat", True)]:
            text, tokens, expected = await _reference(healthy, kind)
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.support.interrupted_llama", "--model", str(tiny_model),
                "--bin", str(llama_bins.llama_server), "--after", str(tokens // 2), cwd=ROOT, env=env,
                stdout=asyncio.subprocess.PIPE)
            try:
                assert proc.stdout is not None
                ready = (await asyncio.wait_for(proc.stdout.readline(), 120)).decode().split()
                assert ready[0] == "READY", ready
                tiers = {ready[1]: 0, healthy.target: 1}
                async with proxy_over(ready[1], healthy.target, host_tiers=tiers, affinity=False) as proxy:
                    answer = asyncio.create_task(_ask(proxy, client, kind, stream))
                    assert (await asyncio.wait_for(proc.stdout.readline(), 60)).strip() == b"PAUSED"
                    proc.kill()  # the agent dies halfway through; its llama-server follows it (PDEATHSIG)
                    got, count = await asyncio.wait_for(answer, 60)
                where = f"{client} {kind} stream={stream}"
                assert got == text, where
                assert count == expected, where
            finally:
                if proc.returncode is None:
                    proc.kill()
                await proc.wait()
    finally:
        await healthy.client.close()
        await healthy.stop()


async def test_a_sampled_answer_resumes_as_one_continuous_answer(tiny_model: Path,
                                                                 llama_bins: LlamaBinaries) -> None:
    body = {"model": "tiny", "messages": MESSAGES, "options": {"temperature": 1.0, "num_predict": 64}}
    async with _agents(tiny_model, llama_bins) as (breaking, backend, healthy):
        tiers = {breaking.target: 0, healthy.target: 1}
        async with proxy_over(breaking.target, healthy.target, host_tiers=tiers, affinity=False) as proxy, \
                aiohttp.ClientSession() as http:
            backend.after, backend.armed = 16, True
            lines = await ndjson(await http.post(proxy.url + "/api/chat", json=body))
    assert backend.broke.is_set()
    final = lines[-1]
    assert final["done"] and final["olol"] == {"hosts": [breaking.target, healthy.target], "resumes": 1}
    assert final["eval_count"] == 64 or final["done_reason"] == "stop"  # the budget covers both hosts
    assert "".join(line["message"]["content"] for line in lines) and not any("error" in line for line in lines)
