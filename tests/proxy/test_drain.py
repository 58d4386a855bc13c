"""Draining a host: the cluster's state, the router skips it, the API and CLI set it, open streams finish."""

from __future__ import annotations

import asyncio
import urllib.parse

import aiohttp
import pytest
from typer.testing import CliRunner

from olol.cli import app
from olol.cluster import Cluster
from olol.errors import ModelNotFound
from olol.proxy.admission import AdmissionQueue, QueueFull
from olol.proxy.policies import LeastConnections
from olol.proxy.router import Router, RouteRequest
from olol.security.apikeys import ApiKeys
from olol.security.settings import SecuritySettings
from tests.proxy.fakes import host
from tests.proxy.helpers import proxy_over, served_by

FULL_KEY = "f" * 32
READ_KEY = "r" * 32


def router(*hosts, wait: float = 1.0) -> Router:  # type: ignore[no-untyped-def]
    return Router(Cluster(hosts), LeastConnections(), AdmissionQueue(wait))


def test_drain_is_host_state_with_its_own_clock() -> None:
    a = host("a")
    c = Cluster([a])
    assert a.state == "up" and a.routable
    before = a.state_since
    c.drain(a)
    assert a.state == "draining" and a.healthy and not a.routable and a.state_since >= before
    assert a.to_json()["draining"] is True and a.to_json()["state"] == "draining"
    c.mark_down(a, "gone")
    assert a.state == "down"  # down wins over draining: it cannot serve at all
    c.mark_up(a)
    assert a.state == "draining"  # an operator's drain outlives a restart of the host
    c.undrain(a)
    assert a.state == "up" and c.routable_hosts() == [a]


async def test_router_skips_a_draining_host() -> None:
    r = router(host("a"), host("b", load=3))
    r.cluster.drain(r.cluster.hosts["a"])
    assert [c.host.id for c in r.eligible("llama3")] == ["b"]
    route = await r.acquire(RouteRequest("llama3"))
    assert route.host_id == "b"  # the more loaded host, because the idle one is draining


async def test_a_model_only_draining_hosts_hold_waits_for_undrain_not_404() -> None:
    r = router(host("a"), wait=2.0)
    a = r.cluster.hosts["a"]
    r.cluster.drain(a)
    waiting = asyncio.create_task(r.acquire(RouteRequest("llama3")))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    r.cluster.undrain(a)  # a capacity event: the queued request takes the host at once
    assert (await asyncio.wait_for(waiting, 1)).host_id == "a"
    with pytest.raises(ModelNotFound):
        await r.acquire(RouteRequest("phi3"))


async def test_draining_only_host_times_out_as_busy() -> None:
    r = router(host("a"), wait=0.05)
    r.cluster.drain(r.cluster.hosts["a"])
    with pytest.raises(QueueFull):
        await r.acquire(RouteRequest("llama3"))


async def test_drain_api_lets_the_open_stream_finish_and_routes_new_requests_elsewhere(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    sims = await ollama_sim_factory.many(2, token_rate=40)
    async with proxy_over(*sims) as proxy, aiohttp.ClientSession() as http:
        body = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}],
                "options": {"num_predict": 20}}
        # A stream is open on one host...
        resp = await http.post(f"{proxy.url}/api/chat", json=body)
        busy = resp.headers["X-OLOL-Host"]
        first = await resp.content.readline()
        assert b"message" in first
        # ...which is drained mid-stream.
        path = f"/api/hosts/{urllib.parse.quote(busy, safe='')}/drain"
        async with http.post(f"{proxy.url}{path}") as drained:
            assert drained.status == 200
            reply = await drained.json()
            assert reply == {"id": busy, "state": "draining", "draining": True, "in_flight": 1}
        before = served_by(sims)
        for _ in range(4):  # new requests avoid it
            async with http.post(f"{proxy.url}/api/chat", json={**body, "stream": False}) as r:
                assert r.status == 200 and r.headers["X-OLOL-Host"] != busy
        lines = [first, *[line async for line in resp.content if line.strip()]]
        assert b'"done":true' in lines[-1]  # the open stream ran to its end
        resp.release()
        busy_index = [s.url for s in sims].index(busy)
        assert served_by(sims)[busy_index] == before[busy_index]
        status = await (await http.get(f"{proxy.url}/api/status")).json()
        assert {h["id"]: h["state"] for h in status["hosts"]}[busy] == "draining"
        async with http.post(f"{proxy.url}/api/hosts/{urllib.parse.quote(busy, safe='')}/undrain") as undrained:
            assert (await undrained.json())["state"] == "up"


async def test_drain_api_unknown_host_is_404(ollama_sim) -> None:  # type: ignore[no-untyped-def]
    async with proxy_over(ollama_sim) as proxy, aiohttp.ClientSession() as http, \
            http.post(f"{proxy.url}/api/hosts/nowhere:1/drain") as resp:
        assert resp.status == 404 and "not found" in (await resp.json())["error"]


async def test_drain_needs_a_full_key(ollama_sim) -> None:  # type: ignore[no-untyped-def]
    keys = SecuritySettings(api_keys=ApiKeys.parse([FULL_KEY, f"{READ_KEY}:read"]))
    async with proxy_over(ollama_sim, security=keys) as proxy, aiohttp.ClientSession() as http:
        path = f"{proxy.url}/api/hosts/{urllib.parse.quote(ollama_sim.url, safe='')}/drain"
        async with http.post(path) as resp:
            assert resp.status == 401
        async with http.post(path, headers={"Authorization": f"Bearer {READ_KEY}"}) as resp:
            assert resp.status == 403
        async with http.post(path, headers={"Authorization": f"Bearer {FULL_KEY}"}) as resp:
            assert resp.status == 200


async def test_cli_drain_and_undrain(ollama_sim) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    async with proxy_over(ollama_sim) as proxy:
        host = proxy.context.cluster.hosts[ollama_sim.url]
        result = await asyncio.to_thread(runner.invoke, app, ["drain", ollama_sim.url, "--url", proxy.url])
        assert result.exit_code == 0, result.output
        assert result.output.strip() == f"{ollama_sim.url}: draining (0 request(s) still open there)"
        assert host.draining
        result = await asyncio.to_thread(runner.invoke, app, ["undrain", ollama_sim.url, "--url", proxy.url])
        assert result.exit_code == 0 and result.output.strip() == f"{ollama_sim.url}: up"
        assert not host.draining
        result = await asyncio.to_thread(runner.invoke, app, ["drain", "nowhere:1", "--url", proxy.url])
        assert result.exit_code == 1 and "404" in result.output and "not found" in result.output


async def test_only_host_draining_answers_busy_not_missing(ollama_sim) -> None:  # type: ignore[no-untyped-def]
    async with proxy_over(ollama_sim, max_queue_wait=0.2) as proxy, aiohttp.ClientSession() as http:
        proxy.context.cluster.drain(proxy.context.cluster.hosts[ollama_sim.url])
        body = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": False}
        async with http.post(f"{proxy.url}/api/chat", json=body) as resp:
            assert resp.status == 503 and "Retry-After" in resp.headers
