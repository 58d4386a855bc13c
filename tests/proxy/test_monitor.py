"""HostMonitor: state feeds (agents) and polling (plain Ollama), down within 3 s, back by itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from olol.cluster import Cluster, Host
from olol.cluster.backend import JSON
from olol.proxy.monitor import HostMonitor
from tests.proxy.fakes import FakeBackend


class FeedBackend(FakeBackend):
    """A backend with an agent-style state feed the test pushes snapshots into."""

    def __init__(self) -> None:
        super().__init__()
        self.feed: asyncio.Queue[JSON | None] = asyncio.Queue()
        self.watch_kwargs: dict[str, Any] = {}
        self.subscriptions = 0

    async def watch_state(self, interval: float = 0.0) -> AsyncIterator[JSON]:
        self.watch_kwargs = {"interval": interval}
        self.subscriptions += 1
        while (snap := await self.feed.get()) is not None:
            yield snap


async def wait_for(cond: Any, timeout: float = 3.0) -> None:
    async def loop() -> None:
        while not cond():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(loop(), timeout)


async def test_state_feed_snapshots_are_applied() -> None:
    backend = FeedBackend()
    host = Host("agent:50051", backend)
    monitor = HostMonitor(host, Cluster([host]), interval=0.1)
    monitor.start()
    try:
        await backend.feed.put({
            "backend_healthy": True, "available_models": ["llama3", "phi3:mini"],
            "loaded": [{"name": "llama3:latest", "size_vram": "5"}], "in_flight": 2, "parallel_capacity": 6,
            "ram_free": "1024", "ram_total": "4096",  # protobuf's JSON sends int64 as strings
        })
        await wait_for(lambda: host.healthy)
        assert set(host.models) == {"llama3:latest", "phi3:mini"} and host.is_loaded("llama3")
        assert host.reported_in_flight == 2 and host.parallel == 6 and host.ram_free == 1024
        assert host.hardware["ram_total"] == 4096 and backend.watch_kwargs == {"interval": 0.1}
        await backend.feed.put({"backend_healthy": False})
        await wait_for(lambda: not host.healthy)
    finally:
        await monitor.stop()


async def test_quiet_feed_with_live_probe_keeps_host_and_feed() -> None:
    backend = FeedBackend()
    host = Host("agent:50051", backend)
    monitor = HostMonitor(host, Cluster([host]), interval=0.05)
    monitor.start()
    try:
        await backend.feed.put({"backend_healthy": True, "available_models": ["llama3"]})
        await wait_for(lambda: host.healthy)
        await asyncio.sleep(0.5)  # ten quiet intervals
        assert host.healthy and backend.subscriptions == 1
        await backend.feed.put({"backend_healthy": True, "available_models": ["llama3", "phi3"]})
        await wait_for(lambda: host.has_model("phi3"))
    finally:
        await monitor.stop()


async def test_quiet_feed_with_dead_probe_marks_host_down() -> None:
    backend = FeedBackend()
    host = Host("agent:50051", backend)
    monitor = HostMonitor(host, Cluster([host]), interval=0.1)
    monitor.start()
    try:
        await backend.feed.put({"backend_healthy": True, "available_models": ["llama3"]})
        await wait_for(lambda: host.healthy)
        backend.alive = False  # the feed goes silent and the host stops answering
        await wait_for(lambda: not host.healthy, timeout=1.0)
    finally:
        await monitor.stop()


async def test_polling_without_a_feed_learns_models_and_detects_death() -> None:
    backend = FakeBackend(["llama3"], parallel=3)
    backend.loaded = ["llama3:latest"]
    host = Host("http://h:11434", backend)
    cluster = Cluster([host])
    downs: list[str] = []
    cluster.on_down(lambda h: downs.append(h.id))
    monitor = HostMonitor(host, cluster, interval=0.1)
    monitor.start()
    try:
        await monitor.first_probe(1)
        assert host.healthy and host.has_model("llama3") and host.is_loaded("llama3") and host.parallel == 3
        backend.alive = False
        await wait_for(lambda: not host.healthy, timeout=0.5)
        assert downs == ["http://h:11434"]
        backend.alive = True
        await wait_for(lambda: host.healthy, timeout=0.5)
    finally:
        await monitor.stop()


async def test_refresh_rereads_models_now() -> None:
    backend = FakeBackend(["llama3"])
    host = Host("http://h:11434", backend)
    monitor = HostMonitor(host, Cluster([host]), interval=60)
    monitor.start()
    try:
        await monitor.first_probe(1)
        backend.models.append("new:latest")
        await monitor.refresh()
        assert host.has_model("new")
    finally:
        await monitor.stop()


async def test_a_host_loading_a_model_stays_up_and_keeps_its_waiting_requests() -> None:
    backend = FeedBackend()
    host = Host("agent:50051", backend)
    cluster = Cluster([host])
    downs: list[str] = []
    cluster.on_down(lambda h: downs.append(h.id))  # what aborts the requests waiting on a host
    monitor = HostMonitor(host, cluster, interval=0.05)
    monitor.start()
    try:
        await backend.feed.put({"backend_healthy": True, "available_models": ["llama3"]})
        await wait_for(lambda: host.healthy)
        # A cold load: the engine answers nothing yet, and the feed says why.
        await backend.feed.put({"backend_healthy": False, "loading": True})
        await wait_for(lambda: host.loading)
        assert host.healthy and downs == []
        await backend.feed.put({"backend_healthy": True, "available_models": ["llama3"]})
        await wait_for(lambda: not host.loading)
        await backend.feed.put({"backend_healthy": False})  # neither loading nor answering: down
        await wait_for(lambda: not host.healthy)
        assert downs == [host.id]
    finally:
        await monitor.stop()


async def test_the_agent_state_feed_says_when_its_backend_is_loading() -> None:
    from olol.agent.state import HostStateTracker

    class Loading(FakeBackend):
        loading = True

    backend = Loading()
    backend.alive = False  # llama-server answers 503 while it loads
    snapshot = await HostStateTracker(backend, 1).snapshot()
    assert snapshot.loading and not snapshot.backend_healthy
    backend.alive = True
    assert not (await HostStateTracker(backend, 1).snapshot()).loading
