"""Keep the buffers a copy frees for its next chunk, instead of giving them back to the kernel.

Every chunk of a copy passes through a few fresh 1 MiB buffers (gRPC joining
a message, protobuf, aiohttp, the read from the staging file) that are freed
together once it has moved on. glibc's defaults hand that memory back to the
kernel whenever a couple of MiB at the top of the heap are free, so the next
chunk's buffers are faulted in again page by page: measured on the hosts of
`bench/bench_placement.py`, 65,000 page faults per host for a 200 MB model
(1.3 per 4 KiB moved) and 0.2 s of system time; 14,000 with this (most of
them at start-up). Buffers up to 4 MiB come from the heap and up to 16 MiB of
free heap is kept: at most that much freed memory held per malloc arena.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["keep_freed_buffers"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 4 << 20  # above every default chunk (1 MiB) with its message around it
TRIM_THRESHOLD = 16 << 20  # a few chunks in flight, each in a few buffers
_ENV = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")
_done: bool | None = None


def keep_freed_buffers() -> bool:
    """Tune glibc's malloc as above, once per process; False where it does not apply.

    Not on other C libraries or systems, and not where the operator set glibc's
    own variables for these two thresholds: theirs stand.
    """
    global _done
    if _done is None:
        _done = _tune()
    return _done


def _tune() -> bool:
    if not sys.platform.startswith("linux") or any(name in os.environ for name in _ENV):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - glibc only: musl's mallopt accepts and ignores these
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
