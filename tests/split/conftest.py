"""Real rpc-servers (each with its own ggml-rpc-server) and coordinators, on loopback, always stopped.

rpc-servers run in-process on the test's event loop (their ggml workers are
real processes); the speed test is off so every worker plans as equally fast,
which makes plans deterministic. Everything runs with one thread: the CI box
has two cores shared by several suites.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from olol.backends.llamacpp import process as llama_process
from olol.backends.llamacpp.bins import LlamaBinaries
from olol.rpc.server import RpcServer, RpcServerConfig
from olol.rpc.worker import WorkerConfig
from olol.split.coordinator import Coordinator, DistConfig

TOKEN = "test-cluster-token"
PROMPT = "The quick brown fox"
N_PREDICT = 12
CTX = 512  # as the shared baseline llama-server

RpcFactory = Callable[..., Awaitable[RpcServer]]
DistFactory = Callable[..., Awaitable[Coordinator]]


async def complete(url: str, prompt: str = PROMPT, n_predict: int = N_PREDICT) -> str:
    """A greedy completion from a llama-server (or the dist front)."""
    body = {"prompt": prompt, "n_predict": n_predict, "temperature": 0.0, "cache_prompt": False}
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.post(url + "/completion", json=body) as r:
        assert r.status == 200, await r.text()
        content: str = (await r.json())["content"]
        return content


@pytest.fixture(autouse=True)
def _spawn_without_preexec(monkeypatch: pytest.MonkeyPatch) -> None:
    """llama-server is spawned with a preexec_fn (die with the parent), which forces fork(); with gRPC's
    threads busy in this process, gRPC's fork handlers crash a share of such children before they exec
    (SIGSEGV/SIGABRT, ~8% under load). The CLI turns gRPC fork support off before importing grpc;
    here grpc is imported long before, so spawn without the preexec_fn (vfork, no fork handlers): the
    fixtures stop every server anyway."""
    monkeypatch.setattr(llama_process, "_PRCTL", None)


@pytest.fixture(scope="session")
def baseline_text(llama_server: Any) -> str:
    """The single-host answer every split must reproduce."""
    import asyncio

    return asyncio.run(complete(llama_server.url))


@pytest.fixture
async def rpc_server(llama_bins: LlamaBinaries, tmp_path: Path) -> AsyncIterator[RpcFactory]:
    """`await rpc_server(**RpcServerConfig fields, worker=dict(**WorkerConfig fields))`."""
    started: list[RpcServer] = []

    async def start(worker: dict[str, Any] | None = None, **config: Any) -> RpcServer:
        settings = {"binary": llama_bins.rpc_server, "threads": 1, "measure_speed": False, **(worker or {})}
        cfg = RpcServerConfig(
            **{"host": "127.0.0.1", "port": 0, "token": TOKEN, **config}, worker=WorkerConfig(**settings)
        )
        server = await RpcServer.start(cfg)
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()


@pytest.fixture
async def dist(llama_bins: LlamaBinaries, tiny_model: Path) -> AsyncIterator[DistFactory]:
    """`await dist(servers, **DistConfig fields)`: a started coordinator on the tiny model.

    It plans "balanced" unless told otherwise: these tests are about running a split, and on equally fast
    workers the latency objective would put the tiny model on one of them."""
    started: list[Coordinator] = []

    async def start(servers: list[RpcServer], **config: Any) -> Coordinator:
        settings = {"model": tiny_model, "token": TOKEN, "ctx_size": CTX, "threads": 1, "parallel": 1,
                    "llama_server_bin": llama_bins.llama_server, "objective": "balanced", **config}  # fmt: skip
        coordinator = Coordinator(DistConfig(servers=[s.target for s in servers], **settings))
        started.append(coordinator)
        await coordinator.start()
        return coordinator

    yield start
    for coordinator in started:
        await coordinator.close()
