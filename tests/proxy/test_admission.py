from __future__ import annotations

import asyncio

import pytest

from olol.proxy.admission import AdmissionQueue, QueueFull


class Slots:
    """A toy capacity: `free` slots, handed out by `take`."""

    def __init__(self, free: int) -> None:
        self.free = free

    def take(self) -> int | None:
        if self.free <= 0:
            return None
        self.free -= 1
        return 1


async def test_immediate_when_capacity() -> None:
    q = AdmissionQueue(max_wait=1)
    assert await q.admit("m", Slots(1).take) == (1, 0.0)


async def test_waiters_are_served_in_arrival_order() -> None:
    q = AdmissionQueue(max_wait=5)
    slots = Slots(0)
    order: list[int] = []

    async def request(i: int) -> None:
        await q.admit("m", slots.take)
        order.append(i)

    tasks = []
    for i in range(5):
        tasks.append(asyncio.create_task(request(i)))
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)
    assert q.depth("m") == 5
    for _ in range(5):
        slots.free += 1
        q.notify()
        await asyncio.sleep(0.01)
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    assert q.depths() == {}


async def test_newcomer_does_not_jump_the_queue() -> None:
    q = AdmissionQueue(max_wait=5)
    slots = Slots(0)
    first = asyncio.create_task(q.admit("m", slots.take))
    await asyncio.sleep(0.01)
    slots.free = 1  # capacity appears, but nobody has been told yet
    second = asyncio.create_task(q.admit("m", slots.take))
    await asyncio.sleep(0.01)
    assert not second.done()  # it queued behind the first instead of taking the slot
    q.notify()
    await asyncio.sleep(0.01)
    assert first.done() and not second.done()
    second.cancel()


async def test_timeout_gives_busy_with_retry_after() -> None:
    q = AdmissionQueue(max_wait=0.05)
    with pytest.raises(QueueFull) as info:
        await q.admit("m", Slots(0).take)
    assert info.value.status == 503 and info.value.retry_after == 1
    assert "server busy" in info.value.message
    assert q.timeouts == 1 and q.depth("m") == 0


async def test_full_queue_refuses_at_once() -> None:
    q = AdmissionQueue(max_wait=5, max_depth=1)
    slots = Slots(0)
    waiting = asyncio.create_task(q.admit("m", slots.take))
    await asyncio.sleep(0.01)
    with pytest.raises(QueueFull):
        await q.admit("m", slots.take)
    waiting.cancel()


async def test_models_queue_separately() -> None:
    q = AdmissionQueue(max_wait=5)
    blocked = asyncio.create_task(q.admit("a", Slots(0).take))
    await asyncio.sleep(0.01)
    assert await q.admit("b", Slots(1).take) == (1, 0.0)
    blocked.cancel()


async def test_cancelled_waiter_leaves_and_next_one_moves_up() -> None:
    q = AdmissionQueue(max_wait=5)
    slots = Slots(0)
    first = asyncio.create_task(q.admit("m", slots.take))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(q.admit("m", slots.take))
    await asyncio.sleep(0.01)
    first.cancel()
    await asyncio.sleep(0.01)
    slots.free = 1
    q.notify()
    result, waited = await asyncio.wait_for(second, 1)
    assert result == 1 and waited > 0


async def test_retry_goes_to_the_front() -> None:
    q = AdmissionQueue(max_wait=5)
    slots = Slots(0)
    order: list[str] = []

    async def run(name: str, front: bool) -> None:
        await q.admit("m", slots.take, front=front)
        order.append(name)

    normal = asyncio.create_task(run("normal", False))
    await asyncio.sleep(0.01)
    retry = asyncio.create_task(run("retry", True))
    await asyncio.sleep(0.01)
    for _ in range(2):
        slots.free += 1
        q.notify()
        await asyncio.sleep(0.01)
    await asyncio.gather(normal, retry)
    assert order == ["retry", "normal"]
