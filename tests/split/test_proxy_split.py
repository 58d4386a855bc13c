"""`olol proxy --distributed`: a model split across real rpc-servers, served through the proxy like any host."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from olol.backends.llamacpp.backend import LlamaCppBackend
from olol.backends.llamacpp.bins import LlamaBinaries
from olol.proxy import ProxyConfig, RunningProxy, start_proxy
from olol.proxy.distributed import DISTRIBUTED, DistributedModels
from olol.rpc.server import RpcServer
from olol.security.settings import SecuritySettings
from olol.split.settings import DistributedSettings
from tests.split.conftest import CTX, N_PREDICT, PROMPT, TOKEN, RpcFactory

pytestmark = pytest.mark.slow

SPLIT_HOST = "dist:tiny:latest"


def ollama_models_dir(root: Path, model: Path) -> Path:
    """An Ollama models directory holding `model` as `tiny` and `tiny2` (the blob links to the cached file)."""
    digest = "0f" * 32
    (root / "blobs").mkdir(parents=True)
    os.symlink(model, root / "blobs" / f"sha256-{digest}")
    for name in ("tiny", "tiny2"):
        manifest = root / "manifests" / "registry.ollama.ai" / "library" / name / "latest"
        manifest.parent.mkdir(parents=True)
        layers = [{"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}"}]
        manifest.write_text(json.dumps({"schemaVersion": 2, "layers": layers}))
    return root


@dataclass
class Split:
    proxy: RunningProxy
    servers: list[RpcServer]


@pytest.fixture
async def split(
    rpc_server: RpcFactory, llama_bins: LlamaBinaries, llama_server: Any, tiny_model: Path, tmp_path: Path
) -> AsyncIterator[Split]:
    """A proxy over one single-host llama-server ("single", with the tiny model) and two rpc-servers."""
    servers = [await rpc_server(), await rpc_server()]
    dist = DistributedSettings(
        enabled=True, rpc_servers=[s.target for s in servers],
        models_dir=str(ollama_models_dir(tmp_path / "m", tiny_model)),
        ctx_size=CTX, parallel=1, threads=1, llama_server_bin=str(llama_bins.llama_server),
        objective="balanced",  # two equal workers: "latency" would not split the tiny model at all
    )  # fmt: skip
    config = ProxyConfig(host="127.0.0.1", port=0, servers=["single"], probe_interval=0.5, affinity=False,
                         security=SecuritySettings(token=TOKEN), distributed=dist)  # fmt: skip
    running = await start_proxy(config, backend_factory=lambda _spec: LlamaCppBackend(url=llama_server.url))
    try:
        yield Split(running, servers)
    finally:
        await running.stop()
    # Stopping the proxy stopped the split: no llama-server left, the host gone from the cluster.
    service = running.runner.app[DISTRIBUTED]
    assert service.active is None and SPLIT_HOST not in running.context.cluster.hosts


async def chat(proxy: RunningProxy, model: str = "tiny", **options: Any) -> tuple[str, str]:
    """A greedy chat through the proxy: (the answer, the host that served it)."""
    body = {"model": model, "stream": False, "messages": [{"role": "user", "content": PROMPT}],
            "options": {"temperature": 0, "num_predict": N_PREDICT, "seed": 1, **options}}  # fmt: skip
    timeout = aiohttp.ClientTimeout(total=180)
    async with aiohttp.ClientSession(timeout=timeout) as http, http.post(proxy.url + "/api/chat", json=body) as r:
        assert r.status == 200, await r.text()
        reply = await r.json()
        return reply["message"]["content"], r.headers["X-OLOL-Host"]


async def get(proxy: RunningProxy, path: str) -> Any:
    async with aiohttp.ClientSession() as http, http.get(proxy.url + path) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def test_split_model_served_through_the_proxy_and_replanned(split: Split) -> None:
    proxy = split.proxy
    service: DistributedModels = proxy.runner.app[DISTRIBUTED]
    single_text, served_by = await chat(proxy)
    assert served_by == "single" and service.active is None  # it fits on the single host: not split
    assert single_text

    # Asked for: split over both workers, same greedy answer as the single llama-server.
    text, served_by = await chat(proxy, distributed=True)
    assert (text, served_by) == (single_text, SPLIT_HOST)
    assert service.active is not None
    coordinator = service.active.coordinator
    assert coordinator.plan is not None and coordinator.plan.tensor_split == (4, 1)
    for tunnel in coordinator.tunnels.values():
        assert tunnel.counters.bytes_up > 0  # the ggml traffic went through the tunnels

    # The split model is a host like any other: listed, with its status.
    tags = {m["name"]: m for m in (await get(proxy, "/api/tags"))["models"]}
    assert set(tags["tiny:latest"]["olol"]["hosts"]) == {"single", SPLIT_HOST}
    # Its digest is the Ollama blob's name, not a hash of the file (minutes for a model worth splitting).
    assert service.active.host.models["tiny:latest"]["digest"] == "0f" * 32
    hosts = {h["id"]: h for h in (await get(proxy, "/api/status"))["hosts"]}
    assert hosts[SPLIT_HOST]["healthy"] and hosts[SPLIT_HOST]["kind"] == "llamacpp"
    status = await get(proxy, "/api/distributed")
    assert status["active"]["model"] == "tiny:latest" and status["active"]["plan"]["tensor_split"] == [4, 1]

    # Not asked for, but no host has it (tiny2: the same GGUF under another name in the models directory):
    # split automatically, in place of the idle tiny (one split at a time: the workers take one client).
    assert await chat(proxy, model="tiny2") == (single_text, "dist:tiny2:latest")
    assert service.active.name == "tiny2:latest" and SPLIT_HOST not in proxy.context.cluster.hosts
    assert await chat(proxy) == (single_text, "single")  # tiny itself fits on "single": not split
    assert await chat(proxy, distributed=True) == (single_text, SPLIT_HOST)
    coordinator = service.active.coordinator

    # A worker host goes away: the coordinator re-plans over the other and the next request is served.
    lost, kept = split.servers
    await lost.stop()
    assert await chat(proxy, distributed=True) == (single_text, SPLIT_HOST)
    assert coordinator.generation == 2 and coordinator.failures
    assert coordinator.plan is not None and coordinator.plan.used_addresses == (kept.target,)
    assert coordinator.plan.tensor_split == (5,)

    # The ggml worker of the last one crashes (its rpc-server restarts it): asked at once, the proxy still
    # answers, from the next generation.
    await kept.worker.kill()
    assert await chat(proxy, distributed=True) == (single_text, SPLIT_HOST)
    assert coordinator.generation == 3 and kept.worker.restarts == 1


LONG = 256  # tokens: the split's one slot holds 512 (CTX), so the prompt and the whole answer fit


async def stream_chat(proxy: RunningProxy, cut: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """A long streamed greedy chat on the split host: its lines; `cut(n)` is called after each of them."""
    body = {"model": "tiny", "stream": True, "messages": [{"role": "user", "content": PROMPT}],
            "options": {"temperature": 0, "num_predict": LONG, "seed": 1, "distributed": True}}  # fmt: skip
    lines: list[dict[str, Any]] = []
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(timeout=timeout) as http, http.post(proxy.url + "/api/chat", json=body) as r:
        assert r.status == 200 and r.headers["X-OLOL-Host"] == SPLIT_HOST, await r.text()
        async for raw in r.content:
            if raw.strip():
                lines.append(json.loads(raw))
                if cut is not None:
                    cut(len(lines))
    return lines


async def test_a_split_stream_cut_mid_answer_resumes_after_the_replan(split: Split) -> None:
    """An rpc-server of the split goes away mid-answer: llama-server dies with it, the front ends the stream
    with an error event, and the proxy resumes on the same `dist:` host once it re-planned over the other
    worker, from the token ids relayed so far: the client sees the uninterrupted greedy answer, whole."""
    proxy = split.proxy
    service: DistributedModels = proxy.runner.app[DISTRIBUTED]
    reference = await stream_chat(proxy)
    assert service.active is not None
    coordinator = service.active.coordinator
    assert coordinator.generation == 1 and coordinator.plan is not None and coordinator.plan.tensor_split == (4, 1)
    text = "".join(line["message"]["content"] for line in reference)
    chunks = len(reference) - 1
    assert chunks > 64, "the reference answer is too short to cut in the middle"
    assert "olol" not in reference[-1]

    lost, kept = split.servers
    stopping: list[asyncio.Task[None]] = []
    cut_at = chunks // 4  # stopping takes a moment: the cut lands well before the end

    def cut(received: int) -> None:
        if received == cut_at:
            stopping.append(asyncio.create_task(lost.stop()))

    lines = await stream_chat(proxy, cut)
    await stopping[0]
    async with aiohttp.ClientSession() as http, http.get(proxy.url + "/metrics") as r:
        metrics = await r.text()

    assert not any("error" in line for line in lines)
    final = lines[-1]
    assert final["done"] and final["done_reason"] == reference[-1]["done_reason"]
    assert "".join(line["message"]["content"] for line in lines) == text  # byte for byte
    assert final["eval_count"] == reference[-1]["eval_count"]  # the count covers both generations
    assert final["olol"] == {"hosts": [SPLIT_HOST, SPLIT_HOST], "resumes": 1}
    # One resume, for a failure of the host: whichever shows first, the front's error event (code 502:
    # "error") or the health probe that finds the host re-planning (the stream is aborted: "host_down").
    resumes = [line for line in metrics.splitlines() if line.startswith("olol_resumes_total{")]
    assert len(resumes) == 1 and resumes[0].endswith(" 1.0"), resumes
    assert resumes[0].split(" ")[0] in {
        f'olol_resumes_total{{outcome="resumed",reason="{r}"}}' for r in ("error", "host_down")
    }, resumes
    assert 'stage="mid_stream"' not in metrics
    # The coordinator re-planned over the worker left, which served the rest of the answer.
    assert coordinator.generation == 2 and coordinator.failures
    assert coordinator.plan is not None and coordinator.plan.used_addresses == (kept.target,)
