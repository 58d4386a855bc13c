"""The model lifecycle (load on demand, keep_alive, LRU eviction, the memory cap) with fake engines."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from olol.backends.model_pool import ModelPool, human_bytes
from olol.errors import OlolError
from olol.wire.values import FOREVER

MB = 1 << 20


class FakeRunner:
    def __init__(self, name: str, log: list[str], start_delay: float = 0.0) -> None:
        self.name = name
        self.log = log
        self.start_delay = start_delay
        self.running = False

    async def start(self) -> None:
        await asyncio.sleep(self.start_delay)
        self.running = True
        self.log.append(f"start {self.name}")

    async def close(self) -> None:
        self.running = False
        self.log.append(f"stop {self.name}")


def make_pool(
    log: list[str], *, cap: int | None = None, sizes: dict[str, int] | None = None, keep_ns: int = 60 * 10**9,
    start_delay: float = 0.0,
) -> ModelPool[FakeRunner]:
    async def need(name: str, path: Path) -> int:
        return (sizes or {}).get(name, 10 * MB)

    return ModelPool(
        lambda name, path: FakeRunner(name, log, start_delay),
        need,
        cap=(lambda: cap) if cap is not None else None,
        keep_alive_ns=keep_ns,
    )


async def use_once(pool: ModelPool[FakeRunner], name: str, keep_ns: int | None = None) -> int:
    async with pool.use(name, Path(f"/m/{name}.gguf"), keep_ns) as lease:
        assert lease.runner.running
        return lease.load_ns


async def test_loads_on_first_use_and_reports_the_load_time() -> None:
    log: list[str] = []
    pool = make_pool(log, start_delay=0.05)
    first = await use_once(pool, "a")
    second = await use_once(pool, "a")
    assert log == ["start a"]
    assert first >= 50_000_000 and second == 0
    assert [m.name for m in pool.loaded()] == ["a"]
    await pool.close()
    assert log == ["start a", "stop a"]


async def test_idle_model_unloads_after_keep_alive_and_zero_unloads_at_once() -> None:
    log: list[str] = []
    pool = make_pool(log)
    await use_once(pool, "a", keep_ns=50_000_000)  # 50 ms
    await use_once(pool, "b", keep_ns=0)
    assert [m.name for m in pool.loaded()] == ["a"]  # b went as soon as it was idle
    assert "stop b" in log
    for _ in range(100):
        if not pool.loaded():
            break
        await asyncio.sleep(0.01)
    assert pool.loaded() == [] and "stop a" in log
    await pool.close()


async def test_default_keep_alive_and_forever() -> None:
    log: list[str] = []
    pool = make_pool(log, keep_ns=30_000_000)
    await use_once(pool, "a")  # host default: 30 ms
    await use_once(pool, "b", keep_ns=FOREVER)
    await asyncio.sleep(0.15)
    assert [m.name for m in pool.loaded()] == ["b"]
    assert pool.loaded()[0].expires_at is None
    await pool.close()


async def test_a_busy_model_is_not_unloaded_and_its_timer_starts_when_idle() -> None:
    log: list[str] = []
    pool = make_pool(log)
    async with pool.use("a", Path("/m/a.gguf"), 0):
        assert await pool.unload("a") is False  # in use
        assert [m.name for m in pool.loaded()] == ["a"]
    assert pool.loaded() == []


async def test_lru_idle_model_is_evicted_for_a_new_one() -> None:
    log: list[str] = []
    pool = make_pool(log, cap=25 * MB)
    await use_once(pool, "a")
    await use_once(pool, "b")
    await use_once(pool, "a")  # a is now the most recently used
    await use_once(pool, "c")  # needs room for one more: b goes
    assert sorted(m.name for m in pool.loaded()) == ["a", "c"]
    assert log[-2:] == ["stop b", "start c"]
    await pool.close()


async def test_past_the_cap_with_nothing_idle_is_ollamas_error() -> None:
    log: list[str] = []
    pool = make_pool(log, cap=25 * MB)
    async with pool.use("a", Path("/m/a.gguf")), pool.use("b", Path("/m/b.gguf")):
        with pytest.raises(OlolError) as caught:
            await use_once(pool, "c")
    assert caught.value.message == "model requires more system memory (10.0 MiB) than is available (5.0 MiB)"
    assert "start c" not in log
    await pool.close()


async def test_a_model_bigger_than_the_cap_never_loads() -> None:
    pool = make_pool([], cap=5 * MB)
    with pytest.raises(OlolError, match="more system memory"):
        await use_once(pool, "a")


async def test_concurrent_first_requests_load_once() -> None:
    log: list[str] = []
    pool = make_pool(log, start_delay=0.05)
    loads = await asyncio.gather(*(use_once(pool, "a") for _ in range(4)))
    assert log == ["start a"]
    assert all(ns > 0 for ns in loads)  # every one of them waited for the load
    await pool.close()


async def test_a_failed_load_is_reported_and_forgotten() -> None:
    class Broken(FakeRunner):
        async def start(self) -> None:
            raise OlolError("llama-server exited with code 1 during startup")

    async def need(name: str, path: Path) -> int:
        return MB

    pool: ModelPool[FakeRunner] = ModelPool(lambda n, p: Broken(n, []), need)
    with pytest.raises(OlolError, match="exited"):
        await use_once(pool, "a")
    assert pool.loaded() == [] and pool.used == 0


def test_human_bytes_matches_ollama() -> None:
    assert human_bytes(512) == "512 B"
    assert human_bytes(38 * MB) == "38.0 MiB"
    assert human_bytes(3 << 29) == "1.5 GiB"
