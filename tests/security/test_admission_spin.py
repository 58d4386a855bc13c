"""Found by the soak (bench/bench_soak.py): a retry that jumps the queue must not make a waiter spin.

A waiter woken while it was the head, then displaced by a retry put in front
(`front=True`), found its event still set on every pass of its loop and never
yielded: the proxy's event loop stopped (no request, no health probe, no
status) and timer handles piled up until it was killed.
"""

from __future__ import annotations

import asyncio

import pytest

from olol.proxy.admission import AdmissionQueue


@pytest.mark.timeout(10)  # with the bug the loop never yields: only the timeout's signal gets out
async def test_a_displaced_head_waits_instead_of_spinning() -> None:
    queue = AdmissionQueue(max_wait=5.0)
    capacity = {"free": False}

    def attempt() -> str | None:
        return "slot" if capacity["free"] else None

    first = asyncio.create_task(queue.admit("m", attempt))
    await asyncio.sleep(0.01)  # queued: no capacity
    retry = asyncio.create_task(queue.admit("m", attempt, front=True))  # a retry takes the head's place...
    queue.notify()  # ...just as the head is woken: it resumes displaced, with its event set
    ticks = 0
    for _ in range(20):
        await asyncio.sleep(0.01)
        ticks += 1
    assert ticks == 20  # the loop kept running
    capacity["free"] = True
    queue.notify()
    assert (await asyncio.wait_for(retry, 2))[0] == "slot"
    assert (await asyncio.wait_for(first, 2))[0] == "slot"
