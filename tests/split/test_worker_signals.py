"""The ggml worker survives a client hanging up: SIGPIPE is ignored in it, under uvloop too (issue 20).

On d9d1e00 a client closing at the wrong moment killed the worker with SIGPIPE (1 in 20-30
tries): the rpc-server runs on uvloop, which resets every signal in its children, so the
`restore_signals=False` meant to keep SIGPIPE ignored did nothing there.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from olol.rpc.worker import spawn_worker_process

uvloop = pytest.importorskip("uvloop", reason="the rpc-server's loop where installed; asyncio's own is covered too")


async def _ignored_signals() -> int:
    proc = await spawn_worker_process(["/bin/sh", "-c", "grep SigIgn /proc/self/status"], dict(os.environ))
    out, _ = await proc.communicate()
    return int(out.decode().split()[-1], 16)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_the_worker_ignores_sigpipe(loop: str) -> None:
    mask = uvloop.run(_ignored_signals()) if loop == "uvloop" else asyncio.run(_ignored_signals())
    assert mask & (1 << (signal.SIGPIPE - 1))
