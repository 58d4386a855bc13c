"""In-memory stand-ins for unit tests that need no HTTP: a scripted Backend and host builders."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

from olol.cluster import Cluster, Host
from olol.cluster.backend import JSON, Backend, BackendInfo
from olol.errors import OlolError


class FakeBackend(Backend):
    """A backend whose answers a test sets: models, failures, a delay before the first chunk."""

    kind = "fake"

    def __init__(self, models: Iterable[str] = ("llama3:latest",), *, parallel: int = 1) -> None:
        self.models = list(models)
        self.loaded: list[str] = []
        self.parallel = parallel
        self.alive = True
        self.fail_with: Exception | None = None  # raised before the first chunk
        self.break_with: Exception | None = None  # raised after the first chunk
        self.first_delay = 0.0
        self.tokens = 3
        self.calls = 0
        self.closed_streams = 0

    async def info(self) -> BackendInfo:
        return BackendInfo(kind=self.kind, version="0.0.1", url="fake://", parallel=self.parallel)

    async def healthy(self) -> bool:
        return self.alive

    async def _stream(self, request: JSON, key: str) -> AsyncIterator[JSON]:
        self.calls += 1
        try:
            if self.first_delay:
                await asyncio.sleep(self.first_delay)
            if self.fail_with is not None:
                raise self.fail_with
            for i in range(self.tokens):
                yield {"model": request["model"], key: f"t{i} ", "done": False}
                if self.break_with is not None:
                    raise self.break_with
            yield {"model": request["model"], key: "", "done": True, "done_reason": "stop",
                   "eval_count": self.tokens, "eval_duration": 1_000_000}
        finally:
            self.closed_streams += 1

    def generate(self, request: JSON) -> AsyncIterator[JSON]:
        return self._stream(request, "response")

    def chat(self, request: JSON) -> AsyncIterator[JSON]:
        return self._stream(request, "response")

    async def embed(self, request: JSON) -> JSON:
        self.calls += 1
        if self.fail_with is not None:
            raise self.fail_with
        return {"model": request["model"], "embeddings": [[0.1, 0.2]]}

    async def list_models(self) -> list[JSON]:
        if not self.alive:
            raise OlolError("down", 502)
        return [{"name": m, "model": m} for m in self.models]

    async def running(self) -> list[JSON]:
        return [{"name": m, "model": m} for m in self.loaded]

    async def show(self, request: JSON) -> JSON:
        return {"details": {}}


def host(host_id: str, models: Iterable[str] = ("llama3:latest",), *, load: int = 0, parallel: int = 4,
         loaded: Iterable[str] = (), weight: float = 1.0, tier: int = 0, healthy: bool = True) -> Host:
    h = Host(id=host_id, backend=FakeBackend(models), parallel=parallel, weight=weight, tier=tier,
             healthy=healthy)
    h.set_models([{"name": m} for m in models])
    h.set_running([{"name": m} for m in loaded])
    h.in_flight = load
    return h


def cluster(*hosts: Host) -> Cluster:
    return Cluster(hosts)


def fake(h: Host) -> FakeBackend:
    assert isinstance(h.backend, FakeBackend)
    return h.backend


def ids(items: Iterable[Any]) -> list[str]:
    return [c.host.id for c in items]


def cand(h: Host, model: str = "llama3:latest", *, exact: bool = True) -> Any:
    from olol.proxy.policies import Candidate

    return Candidate(h, model, exact)
