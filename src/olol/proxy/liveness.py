"""Liveness of upstream calls: a stalled stream fails, a host marked down aborts its calls at once.

A host that stops sending without closing its connection (SIGSTOP, power loss, a partition)
leaves a read pending forever: TCP says nothing until its keep-alive, minutes later. The
proxy therefore watches every call it waits on:

* while waiting for the next chunk of a stream, a `CallGuard` gives the host `stall` seconds;
  past that the wait ends with `HostStalled` (and the stream can resume elsewhere), unless the
  host is vouched for: healthy, and heard from (its state feed or a probe) within `VOUCH_FRESH`
  seconds. A live host's stream goes quiet when another slot evaluates a long prompt (on one CPU
  thread a 1,200-token prompt silenced the other slot's stream for 10-27 s); a frozen host sends
  no state either. Even a vouched-for stream fails after `VOUCHED_STALLS` stall timeouts;
* every guarded wait is registered under its host, so when the cluster marks the host down
  (its monitor saw no answer to a probe) its waits end with `HostAborted` once the host has
  stayed down, and sent the wait nothing, for `DOWN_GRACE` seconds (`FIRST_BYTE_GRACE` before a
  first byte): a first-byte wait then fails over to another host instead of sitting out its
  timeout, a stream resumes elsewhere. A wait
  still receiving chunks, or on a host back up by then, is left alone: on a loaded machine a
  monitor misses probes of live hosts, and that must not cut their answers.

The timer is lazy: a chunk only stamps the time, and one timer per stall period checks it,
because a timeout context per chunk cost about a fifth of the proxy's CPU on a short generation.
The guard ends a wait by cancelling the task doing it, and only while that task is inside the
guarded `wait` (a cancel landing anywhere else would cut the client's write instead); the
cancel is taken back (`Task.uncancel`) and turned into the error, as `asyncio.timeout` does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

from olol.cluster import Cluster, Host
from olol.errors import BackendUnavailable

__all__ = ["CallGuard", "HostAborted", "HostStalled", "InFlightCalls", "stall_timeout"]

T = TypeVar("T")

#: Seconds a stream may be silent beyond its host's usual gap between tokens, when no
#: `--stall-timeout` is set: enough for a tool call or a stop sequence a host holds back.
STALL_BASE = 10.0
#: How many of the host's measured inter-token gaps the automatic stall timeout allows on top.
STALL_GAPS = 4.0
#: Seconds a host marked down must stay down, sending a stream nothing, before the stream is given up.
DOWN_GRACE = 2.0
#: The same for a wait for the first byte, longer: silence before the first token is normal (a long
#: prompt, a queue on the host), and on a loaded machine monitors mark starved but live hosts down.
FIRST_BYTE_GRACE = 10.0
#: Seconds since a host's last state snapshot or answered probe (one a second) within which it
#: vouches for a silent stream: alive, just busy.
VOUCH_FRESH = 3.0
#: The longest a vouched-for stream may be silent, in stall timeouts: busy is bounded too.
VOUCHED_STALLS = 6.0


class HostStalled(BackendUnavailable):
    """The host sent nothing for the stall timeout in the middle of a stream."""


class HostAborted(BackendUnavailable):
    """The host was marked down while the proxy waited on it."""


def stall_timeout(configured: float | None, tokens_per_s: float | None) -> float:
    """The stall timeout for one stream: the configured one, else `STALL_BASE` plus a few measured gaps."""
    if configured is not None and configured > 0:
        return configured
    gap = 1.0 / tokens_per_s if tokens_per_s else 1.0
    return STALL_BASE + STALL_GAPS * gap


class CallGuard:
    """Watches the waits of one task on one host; see the module docstring."""

    __slots__ = ("_calls", "_down", "_down_at", "_handle", "_last", "_loop", "_task", "_waiting", "host_id",
                 "reason", "stall")

    def __init__(self, calls: InFlightCalls, host_id: str, stall: float | None) -> None:
        self._calls = calls
        self.host_id = host_id
        self.stall = stall
        self.reason: str | None = None
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[object] | None = None
        self._waiting = False
        self._last = self._loop.time()
        self._handle: asyncio.TimerHandle | None = None
        self._down: str | None = None  # why the host was marked down while this guard watched it
        self._down_at = 0.0

    async def wait(self, awaitable: Awaitable[T]) -> T:
        """Await `awaitable`, ending with `HostStalled` / `HostAborted` when the host goes quiet or down."""
        self._raise_if_aborted()
        if self._task is None:
            self._task = asyncio.current_task()
            self._calls.add(self)
        self._last = self._loop.time()
        if self.stall is not None and self._handle is None:
            self._handle = self._loop.call_at(self._last + self.stall, self._check)
        self._waiting = True
        try:
            return await awaitable
        except asyncio.CancelledError:
            if self.reason is not None and self._task is not None and self._task.uncancel() == 0:
                self._raise_if_aborted()
            raise
        finally:
            self._waiting = False

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._calls.discard(self)

    def host_down(self, reason: str) -> None:
        """The host was marked down: end the wait if it stays down and silent for `DOWN_GRACE`."""
        self._down, self._down_at = reason, self._loop.time()
        if self._handle is not None:
            self._handle.cancel()
        self._check()

    def abort(self, reason: str) -> None:
        """End the pending wait (or the next one) with an error saying `reason`."""
        if self.reason is not None:
            return
        self.reason = reason
        if self._waiting and self._task is not None:
            self._task.cancel()

    def _raise_if_aborted(self) -> None:
        if self.reason == "stall":
            raise HostStalled(f"{self.host_id} sent nothing for {self._loop.time() - self._last:.1f}s")
        if self.reason is not None:
            raise HostAborted(f"{self.host_id} is down: {self.reason}")

    def _check(self) -> None:
        self._handle = None
        if self.reason is not None:
            return
        down = self._down if self._down is not None and self._calls.is_down(self.host_id) else None
        self._down = down  # a host back up: only the stall timeout is left
        stall_due = self._last + self.stall if self.stall is not None else None
        grace = DOWN_GRACE if self.stall is not None else FIRST_BYTE_GRACE
        down_due = max(self._last, self._down_at) + grace if down is not None else None
        dues = [d for d in (stall_due, down_due) if d is not None]
        if not dues:
            return
        now = self._loop.time()
        if self._waiting and down_due is not None and now >= down_due:
            self.abort(down or "marked down")
        elif self._waiting and stall_due is not None and now >= stall_due:
            stall = stall_due - self._last
            if now < self._last + stall * VOUCHED_STALLS and self._calls.vouched(self.host_id):
                self._handle = self._loop.call_at(now + min(1.0, stall), self._check)
            else:
                self.abort("stall")
        else:  # a chunk came since, or it is not yet due: look again when it would be
            self._handle = self._loop.call_at(max(min(dues), now + 0.05), self._check)


class InFlightCalls:
    """Every guarded wait, by host, so a host's mark-down can end them all."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._by_host: dict[str, set[CallGuard]] = {}
        cluster.on_down(self._host_down)

    def is_down(self, host_id: str) -> bool:
        host = self._cluster.get(host_id)
        return host is not None and not host.healthy

    def vouched(self, host_id: str) -> bool:
        """Whether `host_id` is up and was heard from within `VOUCH_FRESH` seconds (busy, not frozen)."""
        host = self._cluster.get(host_id)
        return host is not None and host.healthy and time.monotonic() - host.last_seen <= VOUCH_FRESH

    def guard(self, host_id: str, stall: float | None = None) -> CallGuard:
        return CallGuard(self, host_id, stall)

    def add(self, guard: CallGuard) -> None:
        self._by_host.setdefault(guard.host_id, set()).add(guard)

    def discard(self, guard: CallGuard) -> None:
        guards = self._by_host.get(guard.host_id)
        if guards is not None:
            guards.discard(guard)
            if not guards:
                del self._by_host[guard.host_id]

    def count(self, host_id: str) -> int:
        return len(self._by_host.get(host_id, ()))

    def _host_down(self, host: Host) -> None:
        for guard in list(self._by_host.get(host.id, ())):
            guard.host_down(host.last_error or "marked down")
