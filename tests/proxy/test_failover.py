"""Failures: invisible retry before the first byte, an error line after it, cancellation, rejoin."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import aiohttp
import ollama
import pytest

from tests.proxy.helpers import ndjson, proxy_over
from tests.support.ollama_sim import BUSY_MESSAGE, DEFAULT_FAIL_MESSAGE, OllamaSim

CHAT: dict[str, Any] = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}


async def test_host_killed_mid_load_loses_no_request(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    # `doomed` is far too slow to answer before it dies, whatever the machine's load.
    doomed = await ollama_sim_factory(latency=30, parallel=8)
    healthy = await ollama_sim_factory(latency=0.05, parallel=8)
    async with proxy_over(doomed, healthy, balancer="round_robin", default_parallel=8, affinity=False) as proxy:
        client = ollama.AsyncClient(host=proxy.url)
        requests = [asyncio.create_task(client.chat(**CHAT)) for _ in range(8)]
        async with asyncio.timeout(10):  # wait until some requests wait on it for their first token
            while doomed.in_flight == 0:
                await asyncio.sleep(0.005)
        await doomed.stop()
        replies = await asyncio.gather(*requests)
    assert all(r.done and r.message.content for r in replies)
    assert healthy.requests["/api/chat"] == 8


async def test_sigkilled_host_process_is_routed_around(ollama_sim_process, ollama_sim) -> None:  # type: ignore[no-untyped-def]
    victim = await ollama_sim_process(models=["llama3.2"])
    async with proxy_over(victim.url, ollama_sim, balancer="round_robin", probe_interval=5) as proxy:
        victim.kill()
        await victim.wait()
        client = ollama.AsyncClient(host=proxy.url)
        replies = [await client.generate(model="llama3.2", prompt=str(i)) for i in range(4)]
        assert all(r.done for r in replies)
        async with aiohttp.ClientSession() as http, http.get(proxy.url + "/api/status") as resp:
            hosts = {h["id"]: h for h in (await resp.json())["hosts"]}
        assert hosts[victim.url]["healthy"] is False  # marked down on the refused connection


async def test_busy_host_503_is_retried_elsewhere(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    busy = await ollama_sim_factory(parallel=1, max_queue=0, latency=0.3)
    spare = await ollama_sim_factory()
    # The proxy believes `busy` has 4 slots; round-robin over 6 concurrent requests sends it 3 at once
    # (each holds its only slot for 0.3 s), whatever the timing, so it must answer 503 at least twice.
    async with proxy_over(busy, spare, balancer="round_robin", default_parallel=4, affinity=False) as proxy:
        client = ollama.AsyncClient(host=proxy.url)
        replies = await asyncio.gather(*(client.chat(**CHAT) for _ in range(6)))
        assert all(r.done for r in replies)
        async with aiohttp.ClientSession() as http, http.get(proxy.url + "/metrics") as resp:
            metrics = await resp.text()
    assert busy.busy_rejections >= 1
    assert f'olol_retries_total{{host="{busy.url}",reason="busy"}}' in metrics


async def test_stale_model_list_404_is_retried_elsewhere(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    stale, fresh = await ollama_sim_factory.many(2)
    async with proxy_over(stale, fresh, balancer="round_robin", probe_interval=5) as proxy:
        del stale.models["llama3.2:latest"]  # behind the proxy's back
        client = ollama.AsyncClient(host=proxy.url)
        for _ in range(3):
            assert (await client.generate(model="llama3.2", prompt="x")).done
    assert stale.requests["/api/generate"] == 1  # tried once, then dropped from its model list
    assert fresh.requests["/api/generate"] == 3


async def test_first_byte_timeout_moves_on(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    slow = await ollama_sim_factory(latency=5)
    quick = await ollama_sim_factory()
    async with proxy_over(slow, quick, balancer="round_robin", first_byte_timeout=0.3, affinity=False) as proxy, \
            aiohttp.ClientSession() as http:
        for _ in range(2):
            started = time.monotonic()
            async with http.post(proxy.url + "/api/chat", json=CHAT) as resp:
                lines = await ndjson(resp)
                assert resp.headers["X-OLOL-Host"] == quick.url
            assert lines[-1]["done"] and time.monotonic() - started < 2
    await asyncio.sleep(0.05)
    assert slow.cancelled_streams >= 1  # the abandoned attempt was closed, not left running


async def test_error_after_first_byte_is_a_final_error_line(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    flaky = await ollama_sim_factory(fail_after_tokens=3)
    async with proxy_over(flaky) as proxy, aiohttp.ClientSession() as http:
        async with http.post(proxy.url + "/api/chat", json=CHAT) as resp:
            assert resp.status == 200
            lines = await ndjson(resp)
        assert len(lines) == 4 and lines[-1] == {"error": DEFAULT_FAIL_MESSAGE}
        async with http.post(proxy.url + "/api/chat", json={**CHAT, "stream": False}) as resp:
            assert resp.status == 500 and (await resp.json()) == {"error": DEFAULT_FAIL_MESSAGE}
        with pytest.raises(ollama.ResponseError, match="simulated failure"):
            async for _ in await ollama.AsyncClient(host=proxy.url).chat(**CHAT, stream=True):
                pass


async def test_host_dying_mid_stream_ends_with_an_error_line(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    dying = await ollama_sim_factory(die_after_tokens=2)
    async with proxy_over(dying) as proxy, aiohttp.ClientSession() as http:
        async with http.post(proxy.url + "/api/generate", json={"model": "llama3.2", "prompt": "x"}) as resp:
            lines = await asyncio.wait_for(ndjson(resp), 5)  # never a hang
        assert len(lines) == 3 and "error" in lines[-1]
        assert all("response" in line for line in lines[:-1])


async def test_client_disconnect_cancels_the_upstream_generation(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    sim = await ollama_sim_factory(token_rate=50, response_tokens=500)
    async with proxy_over(sim) as proxy:
        async with aiohttp.ClientSession() as http, http.post(proxy.url + "/api/chat", json=CHAT) as resp:
            await resp.content.readline()
            await resp.content.readline()
        for _ in range(50):
            if sim.cancelled_streams:
                break
            await asyncio.sleep(0.02)
        assert sim.cancelled_streams == 1 and sim.in_flight == 0
        assert sim.tokens_generated < 100
        assert proxy.context.cluster.hosts[sim.url].in_flight == 0


async def test_dead_host_detected_within_3s_and_rejoins(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    sim = await ollama_sim_factory()
    async with proxy_over(sim, probe_interval=1.0, max_queue_wait=5) as proxy:
        client = ollama.AsyncClient(host=proxy.url)
        url = sim.url
        host = proxy.context.cluster.hosts[url]
        assert host.healthy
        await sim.stop()
        started = time.monotonic()
        while host.healthy:
            await asyncio.sleep(0.05)
        assert time.monotonic() - started < 3
        assert (await client.list()).models == []
        # A request for a model whose only host is down fails at once, as a lone Ollama that is down
        # does (this used to wait for the host, then lie "server busy"): a 503 naming it, no Retry-After.
        # (after the rejoin grace, 3 probe intervals: a host that restarts has that long to come back).
        async with aiohttp.ClientSession() as http:
            body = {"model": "llama3.2", "prompt": "x"}
            asked = time.monotonic()
            async with http.post(proxy.url + "/api/generate", json=body) as resp:
                error = (await resp.json())["error"]
                assert resp.status == 503 and "Retry-After" not in resp.headers
        assert time.monotonic() - asked < 4.5  # not max_queue_wait
        assert error.startswith(f'model "llama3.2" is only on hosts that are down: {url} (down since ')
        await sim.start()  # the host rejoins by itself, on the same port
        while not host.healthy:
            await asyncio.sleep(0.05)
        assert (await client.generate(model="llama3.2", prompt="x")).done


async def test_model_only_on_down_hosts_differs_from_unknown_and_busy(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    up, down = await ollama_sim_factory(parallel=1, max_queue=0, latency=0.5), await ollama_sim_factory()
    down.add_model("phi3:mini")
    async with proxy_over(up, down, max_queue_wait=0.2, max_queue=0, default_parallel=1) as proxy, \
            aiohttp.ClientSession() as http:
        url = down.url
        await down.stop()
        host = proxy.context.cluster.hosts[url]
        while host.healthy:
            await asyncio.sleep(0.05)
        async def ask(model: str) -> tuple[int, str, str | None]:
            async with http.post(proxy.url + "/api/generate", json={"model": model, "prompt": "x"}) as r:
                text = await r.text()
                return r.status, json.loads(text)["error"] if r.status != 200 else "", r.headers.get("Retry-After")
        status, error, retry = await ask("phi3:mini")  # only on the down host
        assert (status, retry) == (503, None) and url in error and "down since" in error
        assert await ask("nope") == (404, "model 'nope' not found", None)  # on no host at all
        busy = asyncio.create_task(ask("llama3.2"))  # the only slot of the live host...
        await asyncio.sleep(0.1)
        status, error, retry = await ask("llama3.2")  # ...is taken: busy, with Retry-After
        assert status == 503 and retry is not None and "busy" in error
        assert (await busy)[0] == 200


async def test_no_live_host_ends_in_busy_after_the_wait(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    sim = await ollama_sim_factory()
    async with proxy_over(sim, max_queue_wait=0.3) as proxy:
        host = proxy.context.cluster.hosts[sim.url]
        await sim.stop()
        proxy.context.cluster.mark_down(host, "test")
        with pytest.raises(ollama.ResponseError) as info:
            await asyncio.wait_for(ollama.AsyncClient(host=proxy.url).generate(model="llama3.2", prompt="x"), 5)
        assert info.value.status_code == 503


async def test_all_hosts_failing_returns_the_last_error(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    sims: list[OllamaSim] = await ollama_sim_factory.many(2, parallel=1, max_queue=0, latency=0.5)
    async with proxy_over(*sims, default_parallel=4, max_attempts=2) as proxy, aiohttp.ClientSession() as http:
        blockers = [asyncio.create_task(http.post(proxy.url + "/api/chat", json=CHAT)) for _ in range(2)]
        await asyncio.sleep(0.1)
        async with http.post(proxy.url + "/api/chat", json=CHAT) as resp:
            assert resp.status == 503 and (await resp.json()) == {"error": BUSY_MESSAGE}
            assert resp.headers["Retry-After"]
        for b in blockers:
            (await b).release()


async def test_hosts_unreachable_from_the_start_is_a_503_not_a_404() -> None:
    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    async with proxy_over(dead, max_queue_wait=30) as proxy, aiohttp.ClientSession() as http:
        started = time.monotonic()
        async with http.post(proxy.url + "/api/chat", json={"model": "llama3.2", "messages": []}) as r:
            assert r.status == 503 and "Retry-After" not in r.headers
            error = (await r.json())["error"]
        assert time.monotonic() - started < 2
        assert error.startswith(f'model "llama3.2" cannot be served: no host is up: {dead} (down since ')
