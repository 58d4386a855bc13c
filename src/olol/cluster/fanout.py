"""Running one management call on several hosts at once and reporting each outcome.

Partial failure is reported, not hidden: callers get which hosts succeeded,
which failed and why, and which were skipped because their backend cannot do
the operation at all (a llama.cpp host asked to copy a model).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from olol.cluster import Host
from olol.cluster.backend import JSON
from olol.errors import OlolError, Unsupported

__all__ = ["PARTIAL_HEADER", "FanOut", "as_olol_error", "fan_out"]

R = TypeVar("R")
PARTIAL_HEADER = "X-OLOL-Partial-Failure"


def as_olol_error(exc: BaseException) -> OlolError:
    if isinstance(exc, OlolError):
        return exc
    if isinstance(exc, TimeoutError):
        return OlolError("timed out", status=504)
    return OlolError(f"{type(exc).__name__}: {exc}", status=502)


@dataclass
class FanOut(Generic[R]):
    ok: dict[str, R] = field(default_factory=dict)
    failed: dict[str, OlolError] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def raise_if_none_succeeded(self) -> None:
        if not self.ok and self.failed:
            first = next(iter(self.failed.values()))
            if len(self.failed) == 1:
                raise first
            detail = "; ".join(f"{h}: {e.message}" for h, e in self.failed.items())
            raise OlolError(detail, status=first.status)

    def report(self) -> JSON:
        return {
            "succeeded": list(self.ok),
            "failed": {h: e.message for h, e in self.failed.items()},
            "skipped": self.skipped,
        }

    def headers(self) -> dict[str, str]:
        return {PARTIAL_HEADER: ",".join(self.failed)} if self.failed else {}


async def fan_out(hosts: Sequence[Host], call: Callable[[Host], Awaitable[R]]) -> FanOut[R]:
    results = await asyncio.gather(*(call(h) for h in hosts), return_exceptions=True)
    out: FanOut[R] = FanOut()
    for host, result in zip(hosts, results, strict=True):
        if isinstance(result, Unsupported):
            out.skipped[host.id] = result.message
        elif isinstance(result, Exception):
            out.failed[host.id] = as_olol_error(result)
        elif isinstance(result, BaseException):
            raise result  # cancellation: the client went away
        else:
            out.ok[host.id] = result
    return out
