"""Limits against bad or abusive input to the proxy's HTTP API.

Sizes bound memory per request (a JSON body is read whole before it is parsed),
the body timeout stops a client that trickles a body byte by byte from holding
a connection and a buffer forever, the header limits are aiohttp's parser
limits, and the token buckets share the cluster fairly between API keys (or
client addresses when keys are off).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

__all__ = ["BodyBudget", "HttpLimits", "RateLimiter", "trim_heap"]

MiB = 1 << 20


@dataclass
class HttpLimits:
    #: Largest JSON request body (images travel base64 inside chat requests, hence generous).
    max_body: int = 64 * MiB
    #: Seconds a client gets to send a JSON body once its headers arrived.
    body_timeout: float = 60.0
    #: Bytes of JSON bodies the proxy holds at once, all requests together: a body that would pass it
    #: waits for none and is answered 503 (Retry-After), so many large bodies at once cannot exhaust memory
    #: (a decoded body costs a few times its size while it is checked and sent on). Never below `max_body`.
    body_budget: int = 128 * MiB
    #: Largest blob upload (`POST /api/blobs/...`, model weights: Ollama's largest single files are ~800 GB).
    max_blob: int = 1 << 40
    #: Seconds a blob upload may send nothing before it is dropped (a blob has no overall deadline: it is large).
    blob_idle_timeout: float = 30.0
    #: aiohttp's parser limits: longest request line / header field, and number of headers.
    max_line_size: int = 8190
    max_field_size: int = 8190
    max_headers: int = 128
    #: Open connections one client address may hold (more are closed at once): one client holding
    #: thousands of idle connections would otherwise take every file descriptor the proxy has.
    #: None: a quarter of the process's open-file limit (256 under the common 1,024), at least 64.
    max_connections_per_client: int | None = None
    #: Failed authentications a client address may make per second, and in a burst, before it is
    #: answered 429 without its key even being checked (guessing keys gets slow).
    auth_failure_rate: float = 1.0
    auth_failure_burst: int = 10
    #: Seconds an idle keep-alive connection stays open (aiohttp's default is an hour).
    keepalive_timeout: float = 75.0
    #: Requests per second per API key (or per client address without keys); None: no limit.
    rate: float | None = None
    #: Requests a key may make at once above `rate` (the bucket's size); default: max(1, 2 x rate).
    burst: int | None = None
    #: Strict mode: unknown top-level fields of native /api requests are 400s (in Go's DisallowUnknownFields
    #: words). Off by default because Ollama binds with gin and ignores them: every Ollama release adds
    #: fields, and a client newer than this proxy must keep working.
    reject_unknown_fields: bool = False

    def connection_cap(self) -> int:
        if self.max_connections_per_client is not None:
            return self.max_connections_per_client
        try:
            import resource  # Unix only: here, so Windows falls back below

            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        except (ImportError, OSError, ValueError):  # no such limit here (Windows)
            return 256
        return 1 << 20 if soft == resource.RLIM_INFINITY else max(64, soft // 4)

    def server_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `web.AppRunner`, passed on to aiohttp's request parser."""
        return {
            "max_line_size": self.max_line_size,
            "max_field_size": self.max_field_size,
            "max_headers": self.max_headers,
            "keepalive_timeout": self.keepalive_timeout,
        }


class RateLimiter:
    """Token buckets by key: `rate` per second, holding at most `burst`.

    The table is an LRU of at most `max_keys` buckets: a client inventing a new
    identity per request (many source addresses) costs bounded memory, and an
    evicted bucket comes back full, which only ever errs on the client's side.
    """

    def __init__(self, rate: float, burst: int | None = None, max_keys: int = 10_000) -> None:
        if rate <= 0:
            raise ValueError("rate limit must be positive")
        self.rate = rate
        self.burst = float(burst if burst else max(1, round(2 * rate)))
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def blocked(self, key: str, now: float | None = None) -> float:
        """Like `acquire`, without taking a token: 0.0 when one is there, else the seconds until one is."""
        entry = self._buckets.get(key)
        if entry is None:
            return 0.0
        now = time.monotonic() if now is None else now
        tokens = min(self.burst, entry[0] + (now - entry[1]) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def acquire(self, key: str, now: float | None = None) -> float:
        """0.0 when the request may go; else the seconds until it could (for Retry-After)."""
        now = time.monotonic() if now is None else now
        tokens, at = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


class BodyBudget:
    """The bytes of request bodies in flight, against a total: `take` says whether one more fits."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0

    def take(self, size: int) -> bool:
        if size and self.in_flight + size > self.limit:
            return False
        self.in_flight += size
        return True

    def give(self, size: int) -> None:
        self.in_flight -= size


@functools.cache
def _malloc_trim() -> Any:
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    return getattr(libc, "malloc_trim", None)


def trim_heap() -> None:
    """Hand freed heap memory back to the OS (glibc; elsewhere a no-op).

    A large body is read in many chunks the allocator places in its heap; once freed they
    stay in the process (the RSS) until something trims it, so a burst of large bodies
    would otherwise leave the proxy hundreds of MiB larger for good.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
