"""An agent reuses the memory of a copy's freed 1 MiB buffers instead of faulting in fresh pages per chunk."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from olol.transfer import _memory

SRC = Path(__file__).resolve().parents[2] / "src"

# A copy's pattern: a few 1 MiB buffers per chunk, freed together; page faults counted on the second round.
CHURN = """
import os, resource, sys
tuned = False
if sys.argv[1] == "tuned":
    from olol.transfer._memory import keep_freed_buffers
    tuned = keep_freed_buffers()
def churn():
    for _ in range(50):
        buffers = [os.urandom(1 << 20) for _ in range(4)]
        del buffers
churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
churn()
print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

glibc = pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="tunes glibc's malloc only"
)


def _faults(mode: str, **env: str) -> tuple[bool, int]:
    """(whether malloc was tuned, page faults in the measured round) of a fresh interpreter."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run(
        [sys.executable, "-c", CHURN, mode],
        env={**clean, "PYTHONPATH": str(SRC), **env},
        capture_output=True,
        text=True,
        check=True,
    )
    tuned, faults = out.stdout.split()
    return tuned == "True", int(faults)


@glibc
def test_freed_chunk_buffers_are_reused_not_faulted_in_again() -> None:
    pages = 50 * 4 * 256  # 4 KiB pages of the buffers allocated in the measured round
    assert _faults("plain")[1] > pages // 2  # glibc's defaults: handed back and faulted in afresh
    tuned, faults = _faults("tuned")
    assert tuned and faults < pages // 20


@glibc
def test_the_operators_own_malloc_settings_stand() -> None:
    tuned, faults = _faults("tuned", MALLOC_TRIM_THRESHOLD_="131072")
    assert not tuned and faults > 50 * 4 * 256 // 2


def test_it_tunes_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def tune() -> bool:
        calls.append(1)
        return True

    monkeypatch.setattr(_memory, "_done", None)
    monkeypatch.setattr(_memory, "_tune", tune)
    assert _memory.keep_freed_buffers() and _memory.keep_freed_buffers()
    assert calls == [1]
