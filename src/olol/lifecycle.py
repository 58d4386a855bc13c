"""Stopping what a service started (a background task, a child process), and being told to stop.

Shared because each stop has one right order that is easy to get subtly wrong:
a cancelled task must be awaited (or its cleanup never runs), a child gets
SIGTERM and a grace period before SIGKILL (or a wedged one outlives us), and a
stream abandoned part way is closed (that is what stops its producer). Every
long-running command waits for SIGINT/SIGTERM the same way (`wait_for_signal`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any

__all__ = ["cancel_and_wait", "close_stream", "ready_until_signal", "stop_process", "wait_for_signal"]


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` (None: nothing) and wait until it has finished unwinding."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def close_stream(stream: AsyncIterator[Any]) -> None:
    """Close a stream early: for a backend's stream, that is what tells the backend to stop generating.

    Not `contextlib.aclosing`: streams are typed `AsyncIterator` (an adapter may return any async
    iterator), which need not have `aclose`, and callers close them in `except` blocks too.
    """
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


async def stop_process(
    proc: asyncio.subprocess.Process | None, grace: float, on_kill: Callable[[], None] | None = None
) -> None:
    """SIGTERM `proc`, then SIGKILL if it is still running after `grace` seconds (`on_kill` first)."""
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        if on_kill is not None:
            on_kill()
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def wait_for_signal() -> None:
    """Return once SIGINT or SIGTERM arrives (the handlers stay: a second Ctrl-C while draining does nothing)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows' loop
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def ready_until_signal(what: str) -> None:
    """Print `READY <what>` (the line scripts and tests wait for instead of sleeping), then wait for
    SIGINT or SIGTERM."""
    print(f"READY {what}", flush=True)
    await wait_for_signal()
