"""The threaded agent's bridge to its asyncio loop (olol.bridge.LoopThread)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable

import pytest

from olol.bridge import LoopThread


def consume_in_thread(
    bridge: LoopThread, stream: Callable[[], AsyncIterator[int]], on_item: Callable[[], None]
) -> tuple[threading.Event, list[BaseException]]:
    """Iterate `stream` through the bridge from a thread of its own, as a gRPC thread does; returns the
    event set when that thread is done, and the exception it saw, if any."""
    finished = threading.Event()
    outcome: list[BaseException] = []

    def consume() -> None:
        try:
            for _ in bridge.iterate(stream, lambda _cb: None):
                on_item()
        except BaseException as exc:  # what the gRPC thread would see
            outcome.append(exc)
        finally:
            finished.set()

    threading.Thread(target=consume, daemon=True).start()
    return finished, outcome


def test_stop_ends_a_stream_a_thread_is_waiting_on() -> None:
    """A stream still in flight when the loop stops must end its waiting thread, not hang it forever."""
    bridge = LoopThread("test-bridge")
    started = threading.Event()

    async def forever() -> AsyncIterator[int]:
        yield 1
        await asyncio.Event().wait()  # a backend that never sends its next chunk
        yield 2

    finished, outcome = consume_in_thread(bridge, forever, started.set)
    assert started.wait(10)
    bridge.stop()
    assert finished.wait(10), "the waiting thread hung after the loop stopped"
    assert outcome and not bridge.loop.is_running()


def test_a_step_asked_for_after_stop_fails_instead_of_waiting() -> None:
    """The other order: the loop stops between two items of a stream; the next one must not hang."""
    bridge = LoopThread("test-bridge")
    got_one, stopped = threading.Event(), threading.Event()

    async def endless() -> AsyncIterator[int]:
        while True:
            yield 1

    def next_only_after_stop() -> None:
        got_one.set()
        assert stopped.wait(10)  # ask for the next item only once the loop is gone

    finished, outcome = consume_in_thread(bridge, endless, next_only_after_stop)
    assert got_one.wait(10)
    bridge.stop()
    stopped.set()
    assert finished.wait(10), "asking for a step after stop hung"
    assert isinstance(outcome[0], RuntimeError) and "stopped" in str(outcome[0])


def test_call_after_stop_is_a_clear_error() -> None:
    bridge = LoopThread("test-bridge")
    bridge.stop()

    async def value() -> int:
        return 1

    with pytest.raises(RuntimeError, match="stopped"):
        bridge.call(value())
