"""The dashboard's server side: the snapshot, the one-tick feed, the routes and their security headers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import aiohttp

from olol.proxy.ui.feed import DashboardFeed
from olol.proxy.ui.routes import CSP, FEED
from olol.proxy.ui.snapshot import build_snapshot
from olol.security.apikeys import ApiKeys
from olol.security.settings import SecuritySettings
from tests.proxy.helpers import proxy_over
from tests.support.dashboard_cluster import large_context

FULL_KEY = "f" * 32
READ_KEY = "r" * 32
UPDATE_LIMIT = 50_000  # bytes: the bound for 50 hosts and 200 models


def test_an_update_for_50_hosts_and_200_models_is_under_50_kb() -> None:
    ctx = large_context(50, 200)
    update = DashboardFeed(lambda: build_snapshot(ctx)).encode()
    assert len(update) <= UPDATE_LIMIT, len(update)
    snap = json.loads(update.split(b"data: ", 1)[1])
    assert len(snap["hosts"]) == 50 and len(snap["models"]) == 200
    model = snap["models"][0]
    assert len(model["hosts"]) == 3 and len(model["loaded"]) == 1 and model["q"] and model["size"]
    host = snap["hosts"][0]
    assert host["state"] == "up" and host["ttft"] is not None and host["tps"] is not None
    assert host["vram_total"] == 80_000_000_000
    assert len(snap["recent"]) == 15 and snap["recent"][0][3] == "adaptive"


async def test_one_snapshot_per_tick_however_many_pages() -> None:
    builds = 0

    def build() -> dict[str, Any]:
        nonlocal builds
        builds += 1
        return {"n": builds}

    feed = DashboardFeed(build, interval=0.05)
    subs = [feed.subscribe() for _ in range(5)]
    for _ in range(3):
        updates = await asyncio.gather(*(s.next() for s in subs))
        assert len(set(updates)) == 1  # the very same bytes for every page
    assert feed.ticks == builds and builds <= 4
    for s in subs:
        feed.unsubscribe(s)
    await asyncio.sleep(0.15)
    assert feed._task is None  # nobody listens: no tick
    idle = builds
    await asyncio.sleep(0.1)
    assert builds == idle
    await feed.stop()


async def test_a_slow_page_gets_only_the_newest_update() -> None:
    n = 0

    def build() -> dict[str, Any]:
        nonlocal n
        n += 1
        return {"n": n}

    feed = DashboardFeed(build, interval=0.02)
    slow = feed.subscribe()
    await asyncio.sleep(0.15)  # several ticks pass unread
    update = json.loads((await slow.next()).split(b"data: ", 1)[1])
    assert update["n"] == n  # not the first one: old updates are dropped, never queued
    await feed.stop()
    assert await slow.next() == b""  # the stream ends when the feed stops


async def _events(http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None) -> list[Any]:
    """The hello and the first state event of the feed."""
    async with http.get(f"{url}/ui/events", headers=headers or {}) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
        assert resp.headers["Content-Security-Policy"] == CSP
        out: list[Any] = []
        async for line in resp.content:
            if line.startswith(b"data: "):
                out.append(json.loads(line[6:]))
                if len(out) == 2:
                    return out
    raise AssertionError("feed ended early")


async def test_page_is_open_its_feed_needs_a_key_and_says_what_the_key_may_do(ollama_sim) -> None:  # type: ignore[no-untyped-def]
    keys = SecuritySettings(api_keys=ApiKeys.parse([FULL_KEY, f"{READ_KEY}:read"]))
    async with proxy_over(ollama_sim, security=keys) as proxy, aiohttp.ClientSession() as http:
        async with http.get(f"{proxy.url}/ui/") as resp:
            assert resp.status == 200 and resp.content_type == "text/html"
            assert resp.headers["Content-Security-Policy"] == CSP and resp.headers["X-Frame-Options"] == "DENY"
            page = await resp.text()
        for name in ("dashboard.js", "dashboard.css", "uPlot.iife.min.js", "uPlot.min.css"):
            assert f"static/{name}" in page
            async with http.get(f"{proxy.url}/ui/static/{name}") as resp:
                assert resp.status == 200 and resp.headers["X-Content-Type-Options"] == "nosniff"
        async with http.get(f"{proxy.url}/ui/static/..%2Fsnapshot.py") as resp:
            assert resp.status == 404
        async with http.get(f"{proxy.url}/ui", allow_redirects=False) as resp:
            assert resp.status == 302 and resp.headers["Location"] == "/ui/"
        async with http.get(f"{proxy.url}/ui/events") as resp:
            assert resp.status == 401
        hello, state = await _events(http, proxy.url, {"Authorization": f"Bearer {READ_KEY}"})
        assert hello["access"] == "read"
        assert [h["id"] for h in state["hosts"]] == [ollama_sim.url] and state["hosts"][0]["state"] == "up"
        assert {m["name"] for m in state["models"]} >= {"llama3.2:latest"}
        hello, _ = await _events(http, proxy.url, {"Authorization": f"Bearer {FULL_KEY}"})
        assert hello["access"] == "full"


async def test_feed_without_keys_is_open_and_ends_when_the_proxy_stops(ollama_sim) -> None:  # type: ignore[no-untyped-def]
    async with aiohttp.ClientSession() as http:
        async with proxy_over(ollama_sim, shutdown_timeout=30.0) as proxy:
            hello, state = await _events(http, proxy.url)
            assert hello == {"access": "open", "interval_s": 1.0}
            assert state["traffic"]["requests"] == 0
            resp = await http.get(f"{proxy.url}/ui/events")
            await resp.content.readline()
            assert proxy.runner.app[FEED].pages == 1
            stopping = time.monotonic()
        # The proxy stopped with a page still open: its stream ended instead of holding up the shutdown.
        assert time.monotonic() - stopping < 5.0
        with contextlib.suppress(aiohttp.ClientError, RuntimeError):
            await resp.content.read()
        resp.release()


async def test_routing_decisions_and_counters_reach_the_feed(ollama_sim) -> None:  # type: ignore[no-untyped-def]
    async with proxy_over(ollama_sim) as proxy, aiohttp.ClientSession() as http:
        body = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": False}
        async with http.post(f"{proxy.url}/api/chat", json=body) as resp:
            assert resp.status == 200
        _, state = await _events(http, proxy.url)
        assert state["traffic"]["requests"] == 1
        [(_t, model, host, why, ttft)] = state["recent"]
        assert (model, host, why) == ("llama3.2:latest", ollama_sim.url, "affinity:new") and ttft >= 0


def test_snapshot_says_draining_and_down_with_why_and_since_when() -> None:
    ctx = large_context(3, 6)
    a, b, _c = ctx.cluster.hosts.values()
    ctx.cluster.drain(a)
    ctx.cluster.mark_down(b, "connection refused")
    hosts = build_snapshot(ctx)["hosts"]
    assert [h["state"] for h in hosts] == ["draining", "down", "up"]
    assert hosts[1]["err"] == "connection refused" and "err" not in hosts[0]
    assert all(0 <= h["for_s"] < 5 for h in hosts)


def test_a_host_that_reported_its_cache_use_shows_the_hit_rate_api_status_shows() -> None:
    ctx = large_context(3, 6)
    a, b, _c = ctx.cluster.hosts.values()
    model = next(iter(a.models))
    ctx.cluster.caches.record(a, model, b"You are a helpful assistant. " * 10)
    ctx.cluster.caches.observe(a.id, {"prompt_eval_count": 400, "prompt_eval_cached_count": 300,
                                      "prompt_eval_duration": 10**8})
    ctx.cluster.caches.observe(b.id, {"prompt_eval_count": 50})  # no cache use reported: no rate to show
    hosts = build_snapshot(ctx)["hosts"]
    status = {h["id"]: h["cache"] for h in ctx.cluster.to_json()["hosts"]}  # what /api/status renders
    assert hosts[0]["hit"] == status[a.id]["hit_rate"] == 0.75
    assert hosts[0]["idx"] == status[a.id]["index_bytes"] > 0
    assert "hit" not in hosts[1] and "idx" not in hosts[1] and "hit" not in hosts[2]


def test_traffic_counts_broken_streams_and_those_resumed_elsewhere() -> None:
    ctx = large_context(2, 2)
    assert build_snapshot(ctx)["traffic"]["resumes"] == 0
    resumes = ctx.metrics.resumes
    resumes.labels("connection", "resumed").inc(3)
    resumes.labels("timeout", "resumed").inc()
    resumes.labels("connection", "no_host").inc()
    resumes.labels("connection", "refused_tool_call").inc()
    traffic = build_snapshot(ctx)["traffic"]
    assert (traffic["resumes"], traffic["resumed"]) == (6, 4)
