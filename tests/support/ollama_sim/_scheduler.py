"""Ollama's scheduler as hosts show it: `parallel` slots with a bounded FIFO queue in
front (503 when full), and loaded runners that expire after `keep_alive`.

Tests rely on both: admission decides who runs, who waits and who is told busy;
runners decide what `/api/ps` lists and what a request pays in load time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from tests.support.ollama_sim._catalogue import ModelSpec
from tests.support.ollama_sim._core import _Runner, _SimCore
from tests.support.ollama_sim._errors import BUSY_MESSAGE, SimError
from tests.support.ollama_sim._names import _key


class _Scheduler(_SimCore):
    """Admission and loaded runners over the shared state; every endpoint that runs a model uses it."""

    @property
    def parallel(self) -> int:
        return self._parallel

    @parallel.setter
    def parallel(self, value: int) -> None:
        self._parallel = value
        self._wake()  # more slots: queued requests start now

    @property
    def queued(self) -> int:
        return sum(1 for f in self._waiters if not f.done())

    def loaded_models(self) -> list[str]:
        self._expire()
        return [r.spec.name for r in self._loaded.values()]

    # ------------------------------------------------------------- admission (parallel + queue)
    async def _acquire_slot(self) -> None:
        if self.in_flight < self._parallel and not self._waiters:
            self._take_slot()
            return
        if self.queued >= self.max_queue:
            self.busy_rejections += 1
            raise SimError(503, BUSY_MESSAGE)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # _wake takes the slot on our behalf before resolving us
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release_slot()  # handed a slot just as the client left
            else:
                self.cancelled_queued += 1
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            raise

    def _take_slot(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _release_slot(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        # FIFO hand-over: the slot is taken here, synchronously, so no newcomer can jump the queue.
        while self._waiters and self.in_flight < self._parallel:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._take_slot()
                waiter.set_result(None)

    # ------------------------------------------------------------- loaded models (/api/ps)
    def _expire(self) -> None:
        now = time.time_ns()
        for key, runner in list(self._loaded.items()):
            if runner.refs == 0 and runner.expires_ns is not None and runner.expires_ns <= now:
                del self._loaded[key]

    def _unload(self, spec: ModelSpec) -> None:
        runner = self._loaded.get(_key(spec.name))
        if runner is not None and runner.refs == 0:
            del self._loaded[_key(spec.name)]
        elif runner is not None:
            runner.expires_ns = time.time_ns()  # unload once the running requests finish

    async def _load(self, spec: ModelSpec, keep_alive: int | None, num_ctx: int) -> int:
        """Take a reference on the model's runner, loading it if needed; returns load ns."""
        started = time.monotonic_ns()
        self._expire()
        key = _key(spec.name)
        runner = self._loaded.get(key)
        if runner is None:
            if self.max_loaded_models is not None:
                idle = sorted((r for r in self._loaded.values() if r.refs == 0), key=lambda r: r.last_used_ns)
                while idle and len(self._loaded) >= self.max_loaded_models:
                    del self._loaded[_key(idle.pop(0).spec.name)]
            runner = self._loaded[key] = _Runner(spec=spec, num_ctx=num_ctx)
            runner.refs += 1
            try:
                if self.load_latency > 0:
                    await asyncio.sleep(self.load_latency)
            finally:
                runner.ready.set()
        else:
            runner.refs += 1
            await runner.ready.wait()
        runner.expires_ns = None if keep_alive is None else time.time_ns() + keep_alive
        runner.last_used_ns = time.time_ns()
        return max(1, time.monotonic_ns() - started)

    def _done_with(self, spec: ModelSpec, keep_alive: int | None) -> None:
        runner = self._loaded.get(_key(spec.name))
        if runner is None:
            return
        runner.refs -= 1
        # Ollama counts keep_alive from the end of the request.
        runner.expires_ns = None if keep_alive is None else time.time_ns() + keep_alive
        self._expire()

    @contextlib.asynccontextmanager
    async def _working(self, spec: ModelSpec, keep_alive: int | None, num_ctx: int) -> AsyncIterator[int]:
        """Admission, then the model loaded for the body's duration; yields load ns."""
        await self._acquire_slot()
        try:
            load_ns = await self._load(spec, keep_alive, num_ctx)
            try:
                yield load_ns
            finally:
                self._done_with(spec, keep_alive)
        except (asyncio.CancelledError, ConnectionResetError):
            if not self._stopping and self._runner is not None:  # our own shutdown is no hang-up
                self.cancelled_streams += 1
            raise
        finally:
            self._release_slot()

    async def _pace(self, first_at: float, index: int) -> None:
        loop = asyncio.get_running_loop()
        if not self.token_rate or self.token_rate <= 0:
            await asyncio.sleep(0)  # still yield, so concurrency and hang-ups stay observable
            return
        await asyncio.sleep(max(0.0, first_at + index / self.token_rate - loop.time()))
