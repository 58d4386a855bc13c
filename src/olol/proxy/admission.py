"""Admission: when every eligible host is at capacity, requests wait their turn per model.

One FIFO per model, so a burst for one model cannot starve another. Only the
head of a queue tries to get a host; whenever capacity may have appeared (a
request finished, a host joined) each head is woken. A request that has waited
`max_wait` gets Ollama's busy error with a Retry-After hint; a full queue turns
new requests away at once, as Ollama does past OLLAMA_MAX_QUEUE.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from olol.errors import Busy

__all__ = ["AdmissionQueue", "QueueFull"]

T = TypeVar("T")


class QueueFull(Busy):
    """503 with a hint, in seconds, for the Retry-After header."""

    def __init__(self, retry_after: int) -> None:
        super().__init__()
        self.retry_after = retry_after


class _Waiter:
    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = asyncio.Event()


class AdmissionQueue:
    def __init__(self, max_wait: float, max_depth: int = 512) -> None:
        self.max_wait = max_wait
        self.max_depth = max_depth
        self._queues: dict[str, deque[_Waiter]] = {}
        self.timeouts = 0

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self.max_wait))

    def depth(self, model: str) -> int:
        queue = self._queues.get(model)
        return len(queue) if queue else 0

    def depths(self) -> dict[str, int]:
        return {m: len(q) for m, q in self._queues.items() if q}

    def notify(self) -> None:
        """Capacity may have appeared somewhere: let every queue's head try again."""
        for queue in self._queues.values():
            if queue:
                queue[0].event.set()

    async def admit(self, model: str, attempt: Callable[[], T | None], *, front: bool = False) -> tuple[T, float]:
        """Run `attempt` now or when this request's turn comes; returns its result and the seconds waited.

        `front` puts a request back at the head, for a retry that already waited its turn once.
        """
        queue = self._queues.get(model)
        tried = False
        if not queue:
            # The common case, nobody waiting: no queue is made unless this request has to wait.
            result = attempt()
            if result is not None:
                return result, 0.0
            tried = True
            queue = self._queues.setdefault(model, deque())
        if len(queue) >= self.max_depth:
            raise QueueFull(self.retry_after)
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.max_wait
        waiter = _Waiter()
        if front:
            queue.appendleft(waiter)
        else:
            queue.append(waiter)
        if queue[0] is waiter and not tried:
            waiter.event.set()
        try:
            while True:
                if waiter.event.is_set():
                    # Cleared even when a retry took the head meanwhile: a set event makes wait() return
                    # at once, and this loop would spin without yielding. The next head is woken anyway.
                    waiter.event.clear()
                    if queue[0] is waiter:
                        result = attempt()
                        if result is not None:
                            return result, loop.time() - started
                remaining = deadline - loop.time()
                if remaining <= 0:
                    self.timeouts += 1
                    raise QueueFull(self.retry_after)
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await waiter.event.wait()
        finally:
            was_head = queue[0] is waiter
            queue.remove(waiter)
            if was_head and queue:
                # Whatever capacity there is may suit the next one; it checks for itself.
                queue[0].event.set()
            if not queue:
                self._queues.pop(model, None)
