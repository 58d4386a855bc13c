"""Lets the threaded gRPC server call the asyncio core: one loop in its own thread.

Each gRPC worker thread submits coroutines to that loop and waits. A streaming
call pulls one item at a time; when the client cancels, the pending step is
cancelled, which closes the backend stream inside the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import CancelledError, Future
from typing import TypeVar, cast

from olol.lifecycle import close_stream

T = TypeVar("T")

__all__ = ["LoopThread"]

_DONE = object()


class LoopThread:
    def __init__(self, name: str = "olol-agent-loop") -> None:
        self.loop = asyncio.new_event_loop()
        # Every step a thread waits on, so that stop() can end them all (see stop).
        self._lock = threading.Lock()
        self._waiting: set[Future[object]] = set()
        self._stopped = False
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def call(self, coro: Awaitable[T]) -> T:
        try:
            fut = self._submit(_wrap(coro))
        except RuntimeError:
            getattr(coro, "close", lambda: None)()  # never awaited: close it so it doesn't warn
            raise
        return fut.result()

    def _submit(self, coro: Coroutine[object, object, T]) -> Future[T]:
        """Run `coro` on the loop; its future is ended by stop() if the loop stops first."""
        with self._lock:
            if self._stopped or not self.running:
                coro.close()  # never awaited: close it so it doesn't warn
                raise RuntimeError("the agent's event loop is stopped")
            fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
            waiting = cast("Future[object]", fut)
            self._waiting.add(waiting)
        fut.add_done_callback(lambda _f: self._forget(waiting))
        return fut

    def _forget(self, fut: Future[object]) -> None:
        with self._lock:
            self._waiting.discard(fut)

    def iterate(
        self, make: Callable[[], AsyncIterator[T]], on_done: Callable[[Callable[[], None]], object]
    ) -> Iterator[T]:
        """Drive the async iterator `make()` from this thread.

        `on_done` registers a callback run when the RPC ends (grpc's
        `context.add_callback`): a cancelled client cancels the step in flight.
        """
        stream: AsyncIterator[T] = self.call(_make(make))
        pending: list[Future[T]] = []

        def cancel() -> None:
            for fut in pending:
                fut.cancel()

        on_done(cancel)
        try:
            while True:
                fut = self._submit(_next(stream))
                pending[:] = [fut]
                item = fut.result()
                if item is _DONE:
                    return
                yield item
        finally:
            with contextlib.suppress(RuntimeError, CancelledError, TimeoutError):
                self._submit(close_stream(stream)).result(timeout=10)

    def aiter(self, items: Iterator[T]) -> AsyncIterator[T]:
        """A blocking iterator (a client-streaming request) as an async one on the loop."""

        async def gen() -> AsyncIterator[T]:
            while True:
                item = await self.loop.run_in_executor(None, next, items, _DONE)
                if item is _DONE:
                    return
                yield item  # type: ignore[misc]

        return gen()

    def stop(self) -> None:
        """Stop the loop. Steps still in flight are cancelled first, and any a thread still waits on
        afterwards are ended: a gRPC thread waiting on one would otherwise wait forever on a loop that
        no longer runs (and hold up the interpreter's exit)."""
        with self._lock:
            self._stopped = True
        if self.loop.is_running():
            with contextlib.suppress(TimeoutError, RuntimeError, CancelledError):
                asyncio.run_coroutine_threadsafe(_cancel_others(), self.loop).result(timeout=5)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)
        with self._lock:
            left = list(self._waiting)
        for fut in left:
            fut.cancel()


async def _cancel_others() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _wrap(coro: Awaitable[T]) -> T:
    return await coro


async def _make(make: Callable[[], AsyncIterator[T]]) -> AsyncIterator[T]:
    # Created inside the loop so any eager work in `make` runs on the right thread.
    return make()


async def _next(stream: AsyncIterator[T]) -> T:
    try:
        return await anext(stream)
    except StopAsyncIteration:
        return _DONE  # type: ignore[return-value]
