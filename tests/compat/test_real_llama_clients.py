"""Official clients, unchanged, against the proxy over REAL llama.cpp hosts and a simulated Ollama host.

The cluster is what a user runs, started through the CLI: two `olol server
--backend llamacpp` agents (one attached to the shared llama-server, one that
launches and supervises its own) and one simulated Ollama host, behind
`olol proxy`. The PyPI `ollama` Client and AsyncClient and the `openai` client
(on `/v1`) then use every method that makes sense for such a cluster:
inference on llama.cpp (tiny model), management on the simulator, and a clear
"unsupported" where a llama.cpp host cannot do the operation. Greedy output
through the proxy must equal llama-server's own answer for the same prompt.

Not exercised: `web_search`/`web_fetch` (ollama.com's cloud API, never a local
server) and `systemone` (`/v1/systemone`, an endpoint outside Ollama's
documented API that neither llama.cpp nor the proxy serves).

Lean on purpose (the CI box has two shared cores): tiny model, one thread per
llama-server, small `num_predict`; every process started here is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import ollama
import openai
import pytest

from olol.backends.llamacpp.bins import LlamaBinaries
from tests.support.llama_fixtures import BackgroundLlamaServer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "Once upon a time"
GREEDY: dict[str, Any] = {"temperature": 0, "seed": 42}
N = 12  # tokens per generation: enough to compare, cheap on one core
TINY = "tiny"  # served by both llama.cpp agents
SIM_MODEL = "llama3.2"  # served by the simulator only
SIM_EMBED = "nomic-embed-text"


# ----------------------------------------------------------------- processes
@dataclass
class Process:
    name: str
    proc: subprocess.Popen[bytes]
    address: str  # what its READY line announced

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (graceful: an agent closes its llama-server), then SIGKILL whatever is left of the group."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: only what it started


def launch(name: str, argv: list[str], log_dir: Path, timeout: float = 120.0) -> Process:
    """Start `argv` in a session of its own and wait for its `READY <address>` line."""
    log = (log_dir / f"{name}.log").open("wb")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, start_new_session=True)
    log.close()
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0 and sel.select(left):
            line = proc.stdout.readline().decode().strip()
            if line.startswith("READY "):
                return Process(name, proc, line.split(" ", 1)[1])
            if not line and proc.poll() is not None:
                break
    process = Process(name, proc, "")
    process.stop()
    raise RuntimeError(f"{name} did not report READY (exit {proc.returncode}); see {log_dir / (name + '.log')}")


@dataclass
class Cluster:
    proxy: str  # http://host:port of `olol proxy`
    llama: str  # the llama-server behind the first agent: the reference for greedy parity
    agents: list[str]
    sim: str


@pytest.fixture(scope="module")
def cluster(
    llama_server: BackgroundLlamaServer,
    llama_bins: LlamaBinaries,
    tiny_model: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    logs = tmp_path_factory.mktemp("real-llama-cluster")
    olol = [sys.executable, "-m", "olol"]
    agent = [*olol, "server", "--backend", "llamacpp", "--host", "127.0.0.1", "--port", "0", "--model-name", TINY]
    started: list[Process] = []
    try:
        started.append(
            launch("agent-attached", [*agent, "--llama-url", llama_server.url, "--model", str(tiny_model)], logs)
        )
        started.append(
            launch(
                "agent-launching",
                [
                    *agent,
                    "--model",
                    str(tiny_model),
                    "--threads",
                    "1",
                    "--ctx-size",
                    "512",
                    "--parallel",
                    "1",
                    "--llama-server-bin",
                    str(llama_bins.llama_server),
                ],
                logs,
            )
        )
        sim = launch("ollama-sim", [sys.executable, "-m", "tests.support.ollama_sim"], logs)
        started.append(sim)
        servers = [p.address for p in started[:2]] + [sim.address]
        proxy = launch(
            "proxy", [*olol, "proxy", "--host", "127.0.0.1", "--port", "0", "--servers", ",".join(servers)], logs
        )
        started.append(proxy)
        yield Cluster(f"http://{proxy.address}", llama_server.url, servers[:2], sim.address)
    finally:
        for process in reversed(started):
            process.stop()
    assert all(p.proc.returncode is not None for p in started)


async def _post(url: str, body: dict[str, Any]) -> Any:
    async with aiohttp.ClientSession() as http, http.post(url, json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def _get(url: str) -> Any:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def _reference_completion(cluster: Cluster, prompt: str = PROMPT) -> str:
    """llama-server's own greedy continuation of a raw prompt."""
    out = await _post(cluster.llama + "/completion", {"prompt": prompt, "n_predict": N, **GREEDY})
    return str(out["content"])


async def _reference_chat(cluster: Cluster, messages: list[dict[str, str]]) -> str:
    out = await _post(cluster.llama + "/v1/chat/completions", {"messages": messages, "max_tokens": N, **GREEDY})
    return str(out["choices"][0]["message"]["content"])


# ----------------------------------------------------------------- the cluster as clients see it
async def test_every_host_joined(cluster: Cluster) -> None:
    status = await _get(cluster.proxy + "/api/status")
    hosts = status["hosts"]
    by_id = {h["id"]: h for h in hosts} if isinstance(hosts, list) else hosts
    assert set(by_id) == {*cluster.agents, cluster.sim}
    assert all(h["healthy"] for h in by_id.values()), by_id


async def test_async_client_inference_on_llama_cpp_equals_llama_server(cluster: Cluster) -> None:
    client = ollama.AsyncClient(host=cluster.proxy)
    expected = await _reference_completion(cluster)
    assert expected
    options = {**GREEDY, "num_predict": N}
    # Several calls, so the adaptive policy spreads them over both llama.cpp hosts.
    replies = await asyncio.gather(
        *(client.generate(model=TINY, prompt=PROMPT, raw=True, options=options) for _ in range(3))
    )
    assert [r.response for r in replies] == [expected] * 3
    final = replies[0]
    assert final.done and final.done_reason == "length" and final.eval_count == N
    assert final.total_duration and final.eval_duration and final.prompt_eval_count
    parts = [p async for p in await client.generate(model=TINY, prompt=PROMPT, raw=True, options=options, stream=True)]
    assert "".join(p.response or "" for p in parts) == expected and parts[-1].done and parts[-1].eval_count == N

    messages = [{"role": "user", "content": "Hello"}]
    expected_chat = await _reference_chat(cluster, messages)
    chat = await client.chat(model=TINY, messages=messages, options=options)
    assert chat.message.role == "assistant" and chat.message.content == expected_chat and chat.eval_count == N
    streamed = [p async for p in await client.chat(model=TINY, messages=messages, options=options, stream=True)]
    assert "".join(p.message.content or "" for p in streamed) == expected_chat and streamed[-1].done

    embed = await client.embed(model=TINY, input=["first", "second"])
    assert len(embed.embeddings) == 2 and len(embed.embeddings[0]) == 128
    legacy = await client.embeddings(model=TINY, prompt="first")
    assert legacy.embedding == pytest.approx(embed.embeddings[0], rel=1e-4, abs=1e-5)


async def test_async_client_on_the_simulated_host_beside_llama_cpp(cluster: Cluster) -> None:
    client = ollama.AsyncClient(host=cluster.proxy)
    reply = await client.generate(model=SIM_MODEL, prompt="hi", options={"num_predict": 4})
    assert reply.done and reply.eval_count == 4
    chat = [
        p async for p in await client.chat(model=SIM_MODEL, messages=[{"role": "user", "content": "hi"}], stream=True)
    ]
    assert chat[-1].done and "".join(p.message.content or "" for p in chat)
    assert len((await client.embed(model=SIM_EMBED, input="x")).embeddings[0]) == 768


async def test_views_merge_llama_cpp_and_ollama_hosts(cluster: Cluster) -> None:
    client = ollama.AsyncClient(host=cluster.proxy)
    await client.generate(model=TINY, prompt="x", raw=True, options={"num_predict": 1})
    listed = {m.model for m in (await client.list()).models}
    assert {"tiny:latest", "llama3.2:latest", "nomic-embed-text:latest"} <= listed
    tags = await _get(cluster.proxy + "/api/tags")
    where = {m["name"]: sorted(m["olol"]["hosts"]) for m in tags["models"]}
    assert where["tiny:latest"] == sorted(cluster.agents) and where["llama3.2:latest"] == [cluster.sim]
    running = {m.model for m in (await client.ps()).models}
    assert "tiny:latest" in running
    shown = await client.show(TINY)
    assert shown.details and shown.details.family == "llama" and shown.modelinfo
    assert shown.modelinfo.get("llama.embedding_length") == 128
    with pytest.raises(ollama.ResponseError) as missing:
        await client.show("no-such-model")
    assert missing.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as missing:
        await client.generate(model="no-such-model", prompt="x")
    assert missing.value.status_code == 404 and "model 'no-such-model' not found" in missing.value.error


async def test_version_and_root_over_raw_http(cluster: Cluster) -> None:
    version = await _get(cluster.proxy + "/api/version")
    assert version["version"] == "0.12.6"  # the simulator's: the only Ollama host says what the API is
    async with aiohttp.ClientSession() as http:
        async with http.get(cluster.proxy + "/") as resp:
            assert resp.status == 200 and await resp.text() == "Ollama is running"
        async with http.head(cluster.proxy + "/") as resp:
            assert resp.status == 200


async def test_management_runs_on_ollama_and_llama_cpp_hosts_say_unsupported(cluster: Cluster) -> None:
    client = ollama.AsyncClient(host=cluster.proxy)
    # pull fans out to every healthy host: the simulator pulls, the llama.cpp hosts are reported skipped.
    feed = [p async for p in await client.pull("qwen2.5:0.5b", stream=True)]
    statuses = [p.status or "" for p in feed]
    about = {h: [s for s in statuses if s.startswith(h + ": ")] for h in cluster.agents}  # lines on one host
    phases = [s for s in statuses if not any(s.startswith(h + ": ") for h in cluster.agents)]
    assert phases[0] == "pulling manifest" and phases[-1] == "success"
    assert all(any("cannot pull" in s for s in lines) for lines in about.values()), about
    async with (
        aiohttp.ClientSession() as http,
        http.post(cluster.proxy + "/api/pull", json={"model": "all-minilm", "stream": False}) as r,
    ):
        final = await r.json()
    assert final["status"] == "success"
    assert final["olol"]["hosts"] == [cluster.sim] and sorted(final["olol"]["skipped"]) == sorted(cluster.agents)
    assert "qwen2.5:0.5b" in {m.model for m in (await client.list()).models}

    assert (await client.copy(SIM_MODEL, "mine")).status == "success"
    assert (await client.create(model="brief", from_=SIM_MODEL, system="Be brief.")).status == "success"
    listed = {m.model for m in (await client.list()).models}
    assert {"mine:latest", "brief:latest"} <= listed
    assert (await client.push("brief", stream=False)).status == "success"
    assert (await client.delete("mine")).status == "success"
    assert (await client.delete("brief")).status == "success"
    assert not {"mine:latest", "brief:latest"} & {m.model for m in (await client.list()).models}

    # Only llama.cpp hosts have `tiny`, and none of them can manage models: a clear error, never a fake success.
    refusals: list[Awaitable[Any]] = [
        client.push(TINY),
        client.create(model="t2", from_=TINY),
        client.copy(TINY, "t2"),
        client.delete(TINY),
    ]
    for refusal in refusals:
        with pytest.raises(ollama.ResponseError) as refused:
            await refusal
        assert refused.value.status_code == 501 and "llamacpp" in refused.value.error, refused.value.error
    assert "tiny:latest" in {m.model for m in (await client.list()).models}


async def test_sync_client(cluster: Cluster) -> None:
    expected = await _reference_completion(cluster)

    def use() -> dict[str, Any]:
        client = ollama.Client(host=cluster.proxy)
        options = {**GREEDY, "num_predict": N}
        return {
            "generate": client.generate(model=TINY, prompt=PROMPT, raw=True, options=options).response,
            "stream": "".join(
                p.response or ""
                for p in client.generate(model=TINY, prompt=PROMPT, raw=True, options=options, stream=True)
            ),
            "chat": client.chat(
                model=TINY, messages=[{"role": "user", "content": "Hello"}], options=options
            ).message.content,
            "embed": len(client.embed(model=TINY, input="x").embeddings[0]),
            "embeddings": len(client.embeddings(model=TINY, prompt="x").embedding),
            "list": {m.model for m in client.list().models},
            "ps": {m.model for m in client.ps().models},
            "show": getattr(client.show(TINY).details, "family", None),
            "pull": client.pull("qwen2.5:0.5b").status,
            "sim": client.generate(model=SIM_MODEL, prompt="x", options={"num_predict": 3}).eval_count,
        }

    got = await asyncio.to_thread(use)
    assert got["generate"] == got["stream"] == expected
    assert got["chat"] == await _reference_chat(cluster, [{"role": "user", "content": "Hello"}])
    assert got["embed"] == got["embeddings"] == 128
    assert "tiny:latest" in got["list"] and "tiny:latest" in got["ps"]
    assert got["show"] == "llama" and got["pull"] == "success" and got["sim"] == 3


# ----------------------------------------------------------------- openai on /v1
async def test_openai_client_on_v1(cluster: Cluster) -> None:
    oai = openai.AsyncOpenAI(base_url=cluster.proxy + "/v1", api_key="ollama", max_retries=0)
    try:
        messages: list[Any] = [{"role": "user", "content": "Hello"}]
        expected = await _reference_chat(cluster, messages)
        reply = await oai.chat.completions.create(model=TINY, messages=messages, max_tokens=N, temperature=0, seed=42)
        assert reply.choices[0].message.content == expected and reply.choices[0].finish_reason == "length"
        assert reply.usage is not None and reply.usage.completion_tokens == N
        stream = await oai.chat.completions.create(
            model=TINY,
            messages=messages,
            max_tokens=N,
            temperature=0,
            seed=42,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [c async for c in stream]
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == N

        done = await oai.completions.create(model=TINY, prompt=PROMPT, max_tokens=N, temperature=0, seed=42)
        assert done.choices[0].text and done.choices[0].finish_reason == "length"
        pieces = await oai.completions.create(
            model=TINY, prompt=PROMPT, max_tokens=N, temperature=0, seed=42, stream=True
        )
        assert "".join([c.choices[0].text async for c in pieces]) == done.choices[0].text

        vectors = await oai.embeddings.create(model=TINY, input=["first", "second"], encoding_format="float")
        assert len(vectors.data) == 2 and len(vectors.data[0].embedding) == 128
        ids = {m.id async for m in oai.models.list()}
        assert {"tiny:latest", "llama3.2:latest"} <= ids
        assert (await oai.models.retrieve(TINY)).id == "tiny:latest"
        with pytest.raises(openai.NotFoundError):
            await oai.chat.completions.create(model="no-such-model", messages=messages)
    finally:
        await oai.close()


async def test_metrics_saw_both_backends(cluster: Cluster) -> None:
    async with aiohttp.ClientSession() as http, http.get(cluster.proxy + "/metrics") as resp:
        text = await resp.text()
    served = {
        line.split('host="', 1)[1].split('"', 1)[0]
        for line in text.splitlines()
        if line.startswith("olol_requests_total{") and 'model="tiny' in line
    }
    assert served == set(cluster.agents), json.dumps(sorted(served))
