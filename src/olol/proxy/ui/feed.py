"""One tick for every open dashboard: the snapshot is built and encoded once, then handed to each page.

The tick runs only while at least one page listens, at most once per
`interval` (1 s by default). A page that reads slowly never holds the others
back: each subscriber keeps only the newest encoded update, an older one it had
not taken yet is replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from olol.lifecycle import cancel_and_wait

__all__ = ["DashboardFeed", "Subscription"]

log = logging.getLogger(__name__)


class Subscription:
    """One page's slot: the newest update not yet sent to it."""

    def __init__(self) -> None:
        self._latest: bytes | None = None
        self._ready = asyncio.Event()

    def offer(self, update: bytes) -> None:
        self._latest = update
        self._ready.set()

    async def next(self) -> bytes:
        """The newest update; `b""` once the feed closed (the page's stream should end)."""
        await self._ready.wait()
        self._ready.clear()
        update, self._latest = self._latest, None
        assert update is not None
        return update


class DashboardFeed:
    def __init__(self, build: Callable[[], dict[str, Any]], interval: float = 1.0) -> None:
        self.build = build
        self.interval = interval
        self._subscribers: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._latest: bytes | None = None
        self._closed = False
        self.ticks = 0  # snapshots built so far (one per tick, whatever the number of pages)

    def encode(self) -> bytes:
        """The current state as one server-sent event."""
        data = json.dumps(self.build(), ensure_ascii=False, separators=(",", ":"))
        return b"event: state\ndata: " + data.encode() + b"\n\n"

    def subscribe(self) -> Subscription:
        sub = Subscription()
        if self._closed:
            sub.offer(b"")
            return sub
        self._subscribers.add(sub)
        if self._latest is not None:
            sub.offer(self._latest)  # a new page sees the cluster at once, not a tick later
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="dashboard feed")
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    @property
    def pages(self) -> int:
        return len(self._subscribers)

    async def _run(self) -> None:
        try:
            while self._subscribers:
                try:
                    self._latest = self.encode()
                    self.ticks += 1
                except Exception:  # the page must keep its feed even if one snapshot fails
                    log.exception("dashboard snapshot failed")
                else:
                    for sub in list(self._subscribers):
                        sub.offer(self._latest)
                await asyncio.sleep(self.interval)
        finally:
            self._task = None
            self._latest = None  # stale once nobody listens

    async def stop(self) -> None:
        """End every page's stream (so the proxy's shutdown need not wait for them) and the tick."""
        self._closed = True
        for sub in self._subscribers:
            sub.offer(b"")
        self._subscribers.clear()
        task, self._task = self._task, None
        with contextlib.suppress(Exception):
            await cancel_and_wait(task)
