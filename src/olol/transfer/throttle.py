"""How fast and in what pieces blobs travel: the chunk sizes and a shared byte budget per second.

Apart from `blobs` and `growing` because both stream chunks under the same limits.
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["DEFAULT_CHUNK", "MAX_CHUNK", "BandwidthLimiter"]

DEFAULT_CHUNK = 1 << 20
MAX_CHUNK = 16 << 20


class BandwidthLimiter:
    """A byte budget per second shared by every transfer it is given to (one NIC, one limit)."""

    def __init__(self, bytes_per_s: float) -> None:
        if bytes_per_s <= 0:
            raise ValueError("rate limit must be positive")
        self.rate = float(bytes_per_s)
        self._next = 0.0

    async def take(self, n: int) -> None:
        now = time.monotonic()
        start = max(now, self._next)
        self._next = start + n / self.rate
        if start > now:
            await asyncio.sleep(start - now)
