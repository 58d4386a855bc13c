"""`accepts(host, port)`: does anything accept a TCP connection there now (the cheapest liveness probe)."""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["accepts"]


async def accepts(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return True
