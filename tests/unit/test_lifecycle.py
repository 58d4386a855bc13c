"""Stopping a background task and a child process (olol.lifecycle)."""

from __future__ import annotations

import asyncio
import sys

from olol.lifecycle import cancel_and_wait, stop_process


async def test_cancel_and_wait_lets_the_task_clean_up() -> None:
    cleaned = asyncio.Event()

    async def loop() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.set()

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)  # let it start
    await cancel_and_wait(task)
    assert task.cancelled() and cleaned.is_set()
    await cancel_and_wait(None)  # nothing to stop is fine


async def test_stop_process_terminates_politely() -> None:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "import time; time.sleep(60)")
    killed: list[bool] = []
    await stop_process(proc, 10.0, on_kill=lambda: killed.append(True))
    assert proc.returncode == -15 and not killed  # SIGTERM was enough


async def test_stop_process_kills_what_ignores_sigterm() -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None and await proc.stdout.readline() == b"ready\n"  # the handler is in place
    killed: list[bool] = []
    await stop_process(proc, 0.2, on_kill=lambda: killed.append(True))
    assert proc.returncode == -9 and killed == [True]
    await stop_process(proc, 0.2)  # already gone: nothing to do
