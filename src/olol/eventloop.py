"""The event loop OLOL's servers run on: uvloop's where it is installed, else asyncio's own."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["event_loop_factory", "run"]

T = TypeVar("T")


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when it is installed, else None (asyncio's own).

    OLOL's servers are event-loop bound: uvloop's C loop and transports cut the proxy's CPU per request
    by about a tenth (bench_proxy_throughput) and the tunnel's latency per ggml round trip (bench_dist_tunnel
    rtt). It is a dependency where it builds (not on Windows); anywhere it is missing everything runs the
    same on asyncio's loop. `OLOL_EVENT_LOOP=asyncio` opts out.
    """
    if os.environ.get("OLOL_EVENT_LOOP", "").strip().lower() == "asyncio":
        return None
    try:
        import uvloop  # an optional dependency (not on Windows): here, so a missing one is only slower
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on the loop `event_loop_factory` picks."""
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        return runner.run(main)
