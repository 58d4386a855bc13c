from __future__ import annotations

import asyncio
import re

import pytest

from olol.cluster import Cluster
from olol.cluster.routing import RouteRequest
from olol.errors import HostsDown, ModelNotFound
from olol.proxy.admission import AdmissionQueue, QueueFull
from olol.proxy.affinity import SessionAffinity
from olol.proxy.policies import LeastConnections
from olol.proxy.router import NoEligibleHost, Router
from tests.proxy.fakes import host


def router(*hosts, wait: float = 1.0, affinity: bool = False) -> Router:  # type: ignore[no-untyped-def]
    c = Cluster(hosts)
    return Router(c, LeastConnections(), AdmissionQueue(wait), affinity=SessionAffinity() if affinity else None)


async def test_leases_the_least_loaded_host_with_the_model() -> None:
    r = router(host("a", load=2), host("b", load=1), host("c", ["phi3"]))
    route = await r.acquire(RouteRequest("llama3"))
    assert route.host_id == "b" and route.reason == "least_connections"
    assert r.cluster.hosts["b"].in_flight == 2
    route.lease.release()
    assert r.cluster.hosts["b"].in_flight == 1


async def test_unknown_model_is_ollamas_404() -> None:
    with pytest.raises(ModelNotFound, match='model "nope" not found, try pulling it first'):
        await router(host("a")).acquire(RouteRequest("nope"))


async def test_all_tried_raises_no_eligible_host() -> None:
    with pytest.raises(NoEligibleHost):
        await router(host("a")).acquire(RouteRequest("llama3"), ["a"])


async def test_saturated_hosts_are_skipped() -> None:
    r = router(host("a", parallel=1, load=1), host("b", parallel=1, load=5))
    r.cluster.hosts["b"].in_flight = 0
    assert (await r.acquire(RouteRequest("llama3"))).host_id == "b"


async def test_waits_for_capacity_then_gets_the_freed_host() -> None:
    r = router(host("a", parallel=1))
    first = await r.acquire(RouteRequest("llama3"))
    second = asyncio.create_task(r.acquire(RouteRequest("llama3")))
    await asyncio.sleep(0.05)
    assert not second.done() and r.admission.depth("llama3:latest") == 1
    first.lease.release()  # capacity event wakes the queue
    route = await asyncio.wait_for(second, 1)
    assert route.host_id == "a" and route.queued_s > 0


async def test_wait_times_out_with_busy() -> None:
    r = router(host("a", parallel=1, load=1), wait=0.05)
    with pytest.raises(QueueFull):
        await r.acquire(RouteRequest("llama3"))


async def test_model_only_on_a_down_host_fails_at_once_naming_it() -> None:
    # Was: wait for it to rejoin (then 503 "server busy" after the queue wait). The issue asks for
    # Ollama's behaviour: a down server fails at once, and the error says which host, since when.
    r = router(host("a", healthy=False), host("b", ["phi3"]), wait=30.0)
    r.cluster.mark_down(r.cluster.hosts["a"], "connection refused")
    with pytest.raises(HostsDown) as down:
        await asyncio.wait_for(r.acquire(RouteRequest("llama3")), 1)
    assert down.value.status == 503
    assert re.fullmatch(r'model "llama3" is only on hosts that are down: '
                        r"a \(down since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ: connection refused\)", down.value.message)
    r.cluster.mark_up(r.cluster.hosts["a"])
    assert (await r.acquire(RouteRequest("llama3"))).host_id == "a"


async def test_a_down_host_gets_the_rejoin_grace_then_the_503() -> None:
    r = router(host("a", healthy=False), wait=30.0)
    r.rejoin_grace = 0.2
    r.cluster.mark_down(r.cluster.hosts["a"], "connection refused")  # gone, not slow
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(HostsDown):  # never rejoined: the 503 after the grace, not "busy" after 30 s
        await asyncio.wait_for(r.acquire(RouteRequest("llama3")), 2)
    assert 0.2 <= loop.time() - started < 1.0
    pending = asyncio.create_task(r.acquire(RouteRequest("llama3")))
    await asyncio.sleep(0.05)
    r.cluster.mark_up(r.cluster.hosts["a"])  # back within the grace (a restart, a slow probe): served
    assert (await asyncio.wait_for(pending, 1)).host_id == "a"


async def test_a_host_that_only_timed_out_gets_the_whole_queue_wait() -> None:
    r = router(host("a", healthy=False), wait=0.5)  # alive but overloaded: probes timed out
    r.rejoin_grace = 0.05
    r.cluster.mark_down(r.cluster.hosts["a"], "TimeoutError")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(HostsDown):  # still the truth at the end, not "server busy"
        await asyncio.wait_for(r.acquire(RouteRequest("llama3")), 2)
    assert loop.time() - started >= 0.5


async def test_no_host_up_is_a_503_not_a_404() -> None:
    r = router(host("a", [], healthy=False), host("b", [], healthy=False))
    for h in r.cluster.hosts.values():
        r.cluster.mark_down(h, "connection refused")
    with pytest.raises(HostsDown, match=r'model "llama3" cannot be served: no host is up: a .*, b '):
        await r.acquire(RouteRequest("llama3"))
    # Some host is up and lacks it: that is Ollama's 404.
    r.cluster.mark_up(r.cluster.hosts["b"])
    with pytest.raises(ModelNotFound):
        await r.acquire(RouteRequest("llama3"))


async def test_affinity_routes_follow_ups_to_the_same_host() -> None:
    r = router(host("a"), host("b"), affinity=True)
    first = await r.acquire(RouteRequest("llama3", session="s1"))
    first.lease.release()
    assert first.reason == "affinity:new"
    for _ in range(3):
        again = await r.acquire(RouteRequest("llama3", session="s1"))
        again.lease.release()
        assert again.host_id == first.host_id and again.reason == "affinity:hit"


async def test_host_down_purges_its_sessions() -> None:
    r = router(host("a"), host("b"), affinity=True)
    route = await r.acquire(RouteRequest("llama3", session="s1"))
    route.lease.release()
    r.cluster.mark_down(r.cluster.hosts[route.host_id], "gone")
    assert r.affinity is not None and r.affinity.pinned("s1") is None


def cache_router(*hosts, wait: float = 5.0):  # type: ignore[no-untyped-def]
    from olol.cluster import LatencyBook
    from olol.proxy.policies import CacheAware

    c = Cluster(hosts)
    return Router(c, CacheAware(LatencyBook(), c.caches), AdmissionQueue(wait))


PROMPT = b"You are the billing agent. Follow the billing handbook to the letter. " * 20


async def test_a_prompt_whose_prefix_is_in_flight_is_held_for_that_host_then_sent_there() -> None:
    r = cache_router(host("a", parallel=2, loaded=["llama3:latest"]), host("b", parallel=2, loaded=["llama3:latest"]))
    first = await r.acquire(RouteRequest("llama3", prefix=PROMPT + b"question one"))
    second = asyncio.create_task(r.acquire(RouteRequest("llama3", prefix=PROMPT + b"question two")))
    await asyncio.sleep(0.05)
    assert not second.done()  # held, though the other host is idle: it would evaluate the prefix again
    r.cluster.caches.record(first.lease.host, "llama3", first.prefix)  # what the dispatcher does once answered
    first.lease.release()
    route = await asyncio.wait_for(second, 1)
    assert route.host_id == first.host_id and route.reason.startswith("cache:") and route.queued_s >= 0.05


async def test_a_held_prompt_goes_elsewhere_once_an_answer_outlasts_what_waiting_is_worth() -> None:
    r = cache_router(host("a", parallel=2, loaded=["llama3:latest"]), host("b", parallel=2, loaded=["llama3:latest"]))
    first = await r.acquire(RouteRequest("llama3", prefix=PROMPT + b"question one"))
    first.lease.first_byte()  # its prompt is evaluated; nothing measured, so its answer should take no time
    # Past its time an answer is taken to be as late again, and the wait ends once a cold start on b is cheaper:
    # DEFAULT_PROMPT_RATE prices the whole prompt at ~0.7 s, counted twice for evaluating it twice.
    route = await asyncio.wait_for(r.acquire(RouteRequest("llama3", prefix=PROMPT + b"question two")), 5)
    assert route.host_id != first.host_id and 0.8 < route.queued_s < 2.5
    first.lease.release()
    route.lease.release()


async def test_a_prompt_still_being_evaluated_past_its_time_is_still_waited_for() -> None:
    """Slower than priced, but a cold start elsewhere would be no quicker: the hold lasts until it is done."""
    r = cache_router(host("a", parallel=2, loaded=["llama3:latest"]), host("b", parallel=2, loaded=["llama3:latest"]))
    first = await r.acquire(RouteRequest("llama3", prefix=PROMPT + b"question one"))
    second = asyncio.create_task(r.acquire(RouteRequest("llama3", prefix=PROMPT + b"question two")))
    await asyncio.sleep(2.5)  # well past the ~0.7 s the first was priced at, and past a cold start on b
    assert not second.done()
    first.lease.first_byte()
    r.cluster.caches.record(first.lease.host, "llama3", first.prefix)
    first.lease.release()
    route = await asyncio.wait_for(second, 1)
    assert route.host_id == first.host_id and route.reason.startswith("cache:") and route.queued_s >= 2.5
