"""Dispatcher: failover before the first byte, and which errors are not worth another host."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from olol.cluster import Cluster
from olol.cluster.backend import JSON, Backend
from olol.cluster.routing import RouteRequest
from olol.errors import BackendUnavailable, BadRequest, Busy, ModelNotFound, OlolError
from olol.proxy.admission import AdmissionQueue
from olol.proxy.dispatch import Dispatcher
from olol.proxy.metrics import ProxyMetrics
from olol.proxy.policies import RoundRobin
from olol.proxy.router import Router
from tests.proxy.fakes import fake, host


def dispatcher(*hosts, attempts: int = 3, first_byte_timeout: float | None = 1.0) -> Dispatcher:  # type: ignore[no-untyped-def]
    c = Cluster(hosts)
    admission = AdmissionQueue(0.5)
    return Dispatcher(c, Router(c, RoundRobin(), admission), ProxyMetrics(c, admission, None),
                      first_byte_timeout=first_byte_timeout, request_timeout=None, max_attempts=attempts)


def gen(backend: Backend, body: JSON) -> AsyncIterator[JSON]:
    return backend.generate(body)


async def collect(d: Dispatcher) -> tuple[str, list[JSON]]:
    up = await d.open_stream("generate", RouteRequest("llama3"), {"model": "llama3"}, gen)
    try:
        return up.route.host_id, [c async for c in up]
    finally:
        await up.aclose()


@pytest.mark.parametrize("error", [BackendUnavailable("refused"), Busy(), ModelNotFound("llama3"), TimeoutError()])
async def test_retryable_failure_moves_to_the_next_host(error: BaseException) -> None:
    a, b = host("a"), host("b")
    if isinstance(error, TimeoutError):
        fake(a).first_delay = 5
    else:
        fake(a).fail_with = error  # type: ignore[assignment]  # TimeoutError is handled above
    d = dispatcher(a, b, first_byte_timeout=0.1)
    host_id, chunks = await collect(d)
    assert host_id == "b" and chunks[-1]["done"]
    assert a.in_flight == b.in_flight == 0
    assert fake(a).closed_streams == 1  # the failed attempt was closed
    assert a.healthy is not isinstance(error, BackendUnavailable)  # refused: marked down at once


async def test_client_errors_are_not_retried() -> None:
    a, b = host("a"), host("b")
    fake(a).fail_with = BadRequest("invalid options")
    fake(b).fail_with = BadRequest("invalid options")
    with pytest.raises(BadRequest):
        await collect(dispatcher(a, b))
    assert fake(a).calls + fake(b).calls == 1


async def test_every_host_failing_raises_the_last_error() -> None:
    a, b = host("a"), host("b")
    fake(a).fail_with = Busy()
    fake(b).fail_with = Busy("still busy")
    with pytest.raises(Busy):
        await collect(dispatcher(a, b))
    assert a.in_flight == b.in_flight == 0


async def test_attempts_are_capped() -> None:
    hosts = [host(str(i)) for i in range(5)]
    for h in hosts:
        fake(h).fail_with = Busy()
    with pytest.raises(Busy):
        await collect(dispatcher(*hosts, attempts=2))
    assert sum(fake(h).calls for h in hosts) == 2


async def test_stats_are_recorded_from_the_final_chunk() -> None:
    a = host("a")
    d = dispatcher(a)
    await collect(d)
    stats = d.cluster.stats.get("a", "llama3:latest")
    assert stats is not None and stats.tokens_per_s.value == pytest.approx(3000.0)  # 3 tokens in 1 ms


async def test_untyped_backend_error_is_a_host_failure_and_retried() -> None:
    a, b = host("a"), host("b")
    fake(a).fail_with = ConnectionRefusedError("refused")
    host_id, _ = await collect(dispatcher(a, b))
    assert host_id == "b" and not a.healthy


async def test_untyped_error_mid_stream_becomes_an_olol_error() -> None:
    a = host("a")
    fake(a).break_with = ValueError("garbled line")
    # Issue 20: an untyped error that is not a transport failure is a 500, and the host stays up.
    # Issue 14: the client reads words naming the host; Python's text stays in the proxy's log.
    with pytest.raises(OlolError, match="internal error relaying from a") as caught:
        await collect(dispatcher(a))
    assert "garbled line" not in caught.value.message and "ValueError" not in caught.value.message
    assert caught.value.status == 500 and a.healthy
    assert a.in_flight == 0 and fake(a).closed_streams == 1
