"""Whose fault a failure is: only a transport failure marks a host down (issue 20).

One malformed request used to mark every host it was retried on as down: any
untyped exception, the proxy's own request conversion included, counted as the
host failing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from olol.cluster.backend import JSON, Backend
from olol.cluster.routing import RouteRequest
from olol.errors import BadRequest, OlolError
from tests.proxy.fakes import fake, host
from tests.proxy.test_dispatch import collect, dispatcher


def building_fails(backend: Backend, body: JSON) -> AsyncIterator[JSON]:
    # What `AgentBackend.chat` does with a body protobuf cannot carry: it fails before any I/O.
    raise TypeError("'NoneType' object is not subscriptable")


async def test_an_error_building_the_request_is_a_400_on_one_host_only() -> None:
    a, b, c = host("a"), host("b"), host("c")
    d = dispatcher(a, b, c)
    with pytest.raises(BadRequest) as caught:
        await d.open_stream("chat", RouteRequest("llama3"), {"model": "llama3"}, building_fails)
    assert caught.value.message.startswith("invalid request:")
    assert "TypeError" not in caught.value.message and "NoneType" not in caught.value.message  # words, not Python
    assert a.healthy and b.healthy and c.healthy
    assert a.in_flight == b.in_flight == c.in_flight == 0


@pytest.mark.parametrize("error", [ValueError("garbled line"), RecursionError(), KeyError("x")])
async def test_an_untyped_non_transport_error_keeps_the_host_up(error: Exception) -> None:
    a, b = host("a"), host("b")
    fake(a).fail_with = error  # type: ignore[assignment]
    fake(b).fail_with = error  # type: ignore[assignment]
    with pytest.raises(OlolError) as caught:
        await collect(dispatcher(a, b))
    assert caught.value.status == 500
    assert type(error).__name__ not in caught.value.message
    assert a.healthy and b.healthy
    assert fake(a).calls + fake(b).calls == 1  # the same request fails the same way anywhere: not retried


@pytest.mark.parametrize("error", [ConnectionResetError("reset"), ConnectionRefusedError(), EOFError()])
async def test_a_transport_error_still_marks_the_host_down_and_moves_on(error: Exception) -> None:
    a, b = host("a"), host("b")
    fake(a).fail_with = error  # type: ignore[assignment]
    host_id, chunks = await collect(dispatcher(a, b))
    assert host_id == "b" and chunks[-1]["done"]
    assert not a.healthy and b.healthy
