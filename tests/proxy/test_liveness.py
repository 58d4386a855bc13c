"""A frozen host never hangs a client (issue 20): stall timeout, and a mark-down ends every wait on a host.

A host stopped with SIGSTOP keeps its TCP connections open and answers nothing, the way a host
that lost power or sits behind a partition looks to the proxy.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from typing import Any

import aiohttp
import pytest

from olol.cluster import Cluster
from olol.proxy.liveness import DOWN_GRACE, FIRST_BYTE_GRACE, HostAborted, HostStalled, InFlightCalls, stall_timeout
from tests.proxy import fakes
from tests.proxy.helpers import ndjson, proxy_over
from tests.support.sim_fixtures import SimProcess

CHAT: dict[str, Any] = {"model": "llama3.2", "messages": [{"role": "user", "content": "tell me a story"}]}


def test_the_automatic_stall_timeout_is_a_few_seconds_past_the_measured_gap() -> None:
    assert stall_timeout(None, 20.0) == pytest.approx(10.2)
    assert stall_timeout(None, None) == pytest.approx(14.0)  # unmeasured: a 1 s gap is assumed, never unbounded
    assert stall_timeout(2.5, 20.0) == 2.5


async def test_a_guard_ends_a_silent_wait_and_lets_a_lively_one_through() -> None:
    calls = InFlightCalls(Cluster())
    guard = calls.guard("h", stall=0.2)
    assert await guard.wait(asyncio.sleep(0.1, "chunk")) == "chunk"  # under the stall timeout
    assert await guard.wait(asyncio.sleep(0.1, "chunk")) == "chunk"  # each chunk restarts the clock
    started = time.monotonic()
    with pytest.raises(HostStalled):
        await guard.wait(asyncio.sleep(30))
    assert time.monotonic() - started < 1
    guard.close()
    assert calls.count("h") == 0


async def test_a_mark_down_ends_every_wait_on_that_host_only() -> None:
    cluster = fakes.cluster(fakes.host("a"), fakes.host("b"))
    calls = InFlightCalls(cluster)
    on_a = [calls.guard("a") for _ in range(3)]
    on_b = calls.guard("b")
    waits = [asyncio.create_task(g.wait(asyncio.sleep(30))) for g in [*on_a, on_b]]
    await asyncio.sleep(0.05)
    started = time.monotonic()
    cluster.mark_down(cluster.hosts["a"], "probe failed")
    done, pending = await asyncio.wait(waits[:3], timeout=FIRST_BYTE_GRACE + 1)
    assert FIRST_BYTE_GRACE <= time.monotonic() - started < FIRST_BYTE_GRACE + 1
    assert len(done) == 3 and all(isinstance(t.exception(), HostAborted) for t in done)
    _, pending = await asyncio.wait(waits, timeout=0.1)
    assert pending == {waits[3]}
    waits[3].cancel()
    with pytest.raises(asyncio.CancelledError):  # a real cancellation is never taken for an abort
        await waits[3]


async def test_a_stream_on_a_host_marked_down_ends_once_silent_but_a_lively_one_goes_on() -> None:
    cluster = fakes.cluster(fakes.host("a"))
    calls = InFlightCalls(cluster)
    lively, silent = calls.guard("a", stall=30), calls.guard("a", stall=30)
    assert await lively.wait(asyncio.sleep(0.01, "chunk")) == "chunk"
    pending = asyncio.create_task(silent.wait(asyncio.sleep(30)))
    ended: list[float] = []
    pending.add_done_callback(lambda _task: ended.append(time.monotonic()))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    cluster.mark_down(cluster.hosts["a"], "no answer to a probe")  # a monitor may miss a probe on a busy box
    for _ in range(30):  # 3 s of chunks every 0.1 s: still streaming, so still alive
        assert await lively.wait(asyncio.sleep(0.1, "chunk")) == "chunk"
    with pytest.raises(HostAborted, match="no answer to a probe"):
        await pending
    assert ended[0] - started < DOWN_GRACE + 0.5  # not the 30 s stall


async def test_a_host_back_up_within_the_grace_keeps_its_waits() -> None:
    cluster = fakes.cluster(fakes.host("a"))
    calls = InFlightCalls(cluster)
    guard = calls.guard("a")
    pending = asyncio.create_task(guard.wait(asyncio.sleep(FIRST_BYTE_GRACE + 0.5, "first byte")))
    await asyncio.sleep(0.05)
    cluster.mark_down(cluster.hosts["a"], "a missed probe on a busy machine")
    await asyncio.sleep(0.5)
    cluster.mark_up(cluster.hosts["a"])
    assert await pending == "first byte"


async def _stream_until(http: aiohttp.ClientSession, url: str, tokens: int) -> tuple[aiohttp.ClientResponse,
                                                                                    list[dict[str, Any]]]:
    resp = await http.post(url + "/api/chat", json=CHAT)
    return resp, [json.loads(await resp.content.readline()) for _ in range(tokens)]


async def _frozen_host_run(ollama_sim_process: Any, ollama_sim_factory: Any, *, streams: int,
                           **settings: Any) -> tuple[list[list[dict[str, Any]]], float, list[dict[str, Any]]]:
    victim: SimProcess = await ollama_sim_process(models=["llama3.2"], token_rate=20, response_tokens=40, parallel=8)
    healthy = await ollama_sim_factory(response_tokens=40, parallel=8)
    tiers = {victim.url: 0, healthy.url: 1}
    async with proxy_over(victim.url, healthy, host_tiers=tiers, affinity=False, default_parallel=8,
                          **settings) as proxy, aiohttp.ClientSession() as http:
        reference = await ndjson(await http.post(healthy.url + "/api/chat", json=CHAT))
        started = [await _stream_until(http, proxy.url, 2) for _ in range(streams)]
        os.kill(victim.pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        try:
            async def rest(resp: aiohttp.ClientResponse, head: list[dict[str, Any]]) -> list[dict[str, Any]]:
                return head + await ndjson(resp)

            results = await asyncio.wait_for(asyncio.gather(*(rest(r, h) for r, h in started)), 20)
            elapsed = time.monotonic() - frozen_at
        finally:
            os.kill(victim.pid, signal.SIGCONT)
    return results, elapsed, reference


def _text(lines: list[dict[str, Any]]) -> str:
    return "".join((line.get("message") or {}).get("content") or "" for line in lines)


async def test_sigstopped_host_streams_resume_within_the_stall_timeout(ollama_sim_process,  # type: ignore[no-untyped-def]
                                                                       ollama_sim_factory) -> None:
    # Probes so rare the monitor cannot notice: only the stall timeout ends the waits.
    results, elapsed, reference = await _frozen_host_run(
        ollama_sim_process, ollama_sim_factory, streams=5, stall_timeout=1.0, probe_interval=60)
    assert elapsed < 1.0 + 3  # the stall timeout, plus the continuation
    for lines in results:
        assert _text(lines) == _text(reference) and lines[-1]["olol"]["resumes"] == 1


async def test_a_frozen_host_marked_down_aborts_its_streams_at_once(ollama_sim_process,  # type: ignore[no-untyped-def]
                                                                    ollama_sim_factory) -> None:
    # A stall timeout far away: the monitor's mark-down (no answer to a probe) is what ends the waits.
    results, elapsed, reference = await _frozen_host_run(
        ollama_sim_process, ollama_sim_factory, streams=5, stall_timeout=60, probe_interval=0.2)
    assert elapsed < 3 + DOWN_GRACE + 1  # a missed probe, the grace, the continuation
    for lines in results:
        assert _text(lines) == _text(reference) and lines[-1]["olol"]["resumes"] == 1


async def test_a_wait_for_the_first_byte_moves_on_when_a_frozen_host_is_marked_down(  # type: ignore[no-untyped-def]
        ollama_sim_process, ollama_sim_factory) -> None:
    frozen: SimProcess = await ollama_sim_process(models=["llama3.2"], latency=60)  # never answers in time
    healthy = await ollama_sim_factory()
    tiers = {frozen.url: 0, healthy.url: 1}
    async with proxy_over(frozen.url, healthy, host_tiers=tiers, affinity=False) as proxy, \
            aiohttp.ClientSession() as http:
        request = asyncio.create_task(http.post(proxy.url + "/api/chat", json=CHAT))
        async with asyncio.timeout(5):
            while proxy.context.cluster.hosts[frozen.url].in_flight == 0:
                await asyncio.sleep(0.01)
        os.kill(frozen.pid, signal.SIGSTOP)
        started = time.monotonic()
        try:
            resp = await asyncio.wait_for(request, FIRST_BYTE_GRACE + 10)
            lines = await ndjson(resp)
        finally:
            os.kill(frozen.pid, signal.SIGCONT)
    # The monitor's missed probes (about 1 s here), the grace, then the healthy host: not the 300 s timeout.
    assert time.monotonic() - started < 2 + FIRST_BYTE_GRACE + 1
    assert resp.headers["X-OLOL-Host"] == healthy.url and lines[-1]["done"]


async def test_a_silent_stream_on_a_host_still_heard_from_waits_longer_but_not_forever() -> None:
    """On one CPU thread a long prompt in another slot silences a stream for many seconds: a host whose
    state feed (or probe) still arrives is busy, not frozen. Bounded all the same."""
    from olol.proxy.liveness import VOUCHED_STALLS

    cluster = fakes.cluster(fakes.host("a"))
    calls = InFlightCalls(cluster)
    host = cluster.hosts["a"]

    async def heard_from() -> None:
        while True:
            host.last_seen = time.monotonic()
            await asyncio.sleep(0.05)

    feed = asyncio.create_task(heard_from())
    try:
        guard = calls.guard("a", stall=0.2)
        assert await guard.wait(asyncio.sleep(0.5, "chunk")) == "chunk"  # 2.5 stall timeouts of silence
        started = time.monotonic()
        with pytest.raises(HostStalled):
            await guard.wait(asyncio.sleep(30))
        assert 0.2 * VOUCHED_STALLS <= time.monotonic() - started < 0.2 * VOUCHED_STALLS + 1.5
        guard.close()
    finally:
        feed.cancel()
    # Not heard from (a frozen host sends no state either): the plain stall timeout.
    host.last_seen = time.monotonic() - 60
    guard = calls.guard("a", stall=0.2)
    started = time.monotonic()
    with pytest.raises(HostStalled):
        await guard.wait(asyncio.sleep(30))
    assert time.monotonic() - started < 0.2 + 0.5
    guard.close()
