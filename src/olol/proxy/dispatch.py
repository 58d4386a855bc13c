"""Sending a routed request upstream, with invisible failover before the first byte.

Until the first chunk (or the whole reply, for unary calls) has arrived from a
host, nothing has reached the client, so a refused connection, a reset, a busy
or missing-model answer or a timeout just means "try the next best host". After
that the stream belongs to the client: a failure becomes a final error line.
Leases are released on every path; closing a stream (client gone) closes the
upstream call, which makes the host stop generating.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import Any, TypeVar

from olol.cluster import Cluster, normalize
from olol.cluster.backend import JSON, Backend
from olol.cluster.routing import RouteRequest
from olol.errors import BackendUnavailable, BadRequest, Cancelled, ModelNotFound, OlolError
from olol.lifecycle import close_stream
from olol.proxy.liveness import CallGuard, InFlightCalls, stall_timeout
from olol.proxy.metrics import ProxyMetrics
from olol.proxy.router import NoEligibleHost, Route, Router
from olol.wire.convert import INVALID_FOR_HOST
from olol.wire.raw import JsonBody, RawChunk

__all__ = ["Dispatcher", "Upstream"]

log = logging.getLogger(__name__)

StreamCall = Callable[[Backend, JSON], AsyncIterator[JSON]]
UnaryCall = Callable[[Backend, JSON], Awaitable[Any]]
R = TypeVar("R")

# How far inside the first-byte timeout a host's expected service time must be for a `stream: false`
# reply to be asked for whole (see `Dispatcher._stream_body`).
_WHOLE_REPLY_MARGIN = 4.0

# Statuses that say "this host, not this request": worth another host.
_RETRY_STATUSES = frozenset({404, 408, 429, 500, 501, 502, 503, 504})


# What a host that cannot be reached raises: refused, reset, a connection cut mid-reply.
# aiohttp's client errors stay out: its transport errors are OSErrors (`ClientOSError`) or
# typed by the backend; a bug in our own code raises neither.
_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError)


class _Untyped(OlolError):
    """An untyped error that is not a transport failure: the same request would fail the same way anywhere."""

    status = 500


def _as_upstream_error(host_id: str, exc: Exception) -> OlolError:
    """What a backend leaks untyped, as an error: only a transport failure is the host's (502, marked down).

    Anything else (a value our own conversion code choked on, a garbled line) says nothing about the
    host being reachable: marking it down would let one bad request take out every host it is
    retried on, so it is a 500 for this request, not retried.
    """
    if isinstance(exc, OlolError):
        return exc
    if isinstance(exc, _TRANSPORT_ERRORS):
        return BackendUnavailable(f"{host_id}: {_transport_words(exc)}")
    # Clients see words, never Python's exception text (issue 14); the log keeps the traceback.
    log.warning("untyped error from %s (host kept up)", host_id, exc_info=exc)
    return _Untyped(f"internal error relaying from {host_id} (see the proxy's log)")


def _transport_words(exc: BaseException) -> str:
    """A transport failure as a client may read it: the OS's words, not the exception's type."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"connection failed: {exc.strerror.lower()}"
    return "connection closed"


def _request_error(exc: Exception) -> OlolError:
    """An error raised while building a host's request: the request's fault (400), never the host's."""
    if isinstance(exc, OlolError):
        return exc
    log.info("request refused while building it for a host", exc_info=exc)
    return BadRequest(INVALID_FOR_HOST)


def _retry_reason(exc: BaseException) -> str | None:
    """Why another host may succeed, or None when the error is the client's (bad request, cancel) or ours."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, (BadRequest, Cancelled, _Untyped)):
        return None
    if isinstance(exc, BackendUnavailable):
        return "unavailable"
    if isinstance(exc, OlolError) and exc.status in _RETRY_STATUSES:
        return {404: "not_found", 503: "busy", 429: "busy"}.get(exc.status, "error")
    return None


class Upstream:
    """A stream that has produced its first chunk on one host; iterate it once, then it is closed."""

    def __init__(self, dispatcher: Dispatcher, endpoint: str, route: Route, first: JSON,
                 rest: AsyncIterator[JSON], retries: int, deadline: float | None, guard: CallGuard) -> None:
        self._dispatcher = dispatcher
        self.endpoint = endpoint
        self.route = route
        self.retries = retries
        self._first: JSON | None = first
        self._rest = rest
        self._deadline = deadline
        self._guard = guard  # a stall or the host's mark-down ends the wait for the next chunk
        #: Whether a failure counts as the request's error; a resumable stream counts its own.
        self.count_errors = True

    async def __aiter__(self) -> AsyncIterator[JSON]:
        lease = self.route.lease
        tokens = 0
        try:
            if self._first is not None:
                first, self._first = self._first, None
                tokens += 1
                if first.get("done"):
                    self._dispatcher.finished(self, first, tokens)
                yield first
            while True:
                try:
                    chunk = await self._next()
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise OlolError("request timed out", status=504) from None
                except Exception as exc:
                    raise _as_upstream_error(self.route.host_id, exc) from exc
                tokens += 1
                if chunk.get("done"):
                    self._dispatcher.finished(self, chunk, tokens)
                yield chunk
        except OlolError as exc:
            lease.failed()
            self._dispatcher.failed_mid_stream(self, exc)
            raise
        finally:
            await self.aclose()

    async def _next(self) -> JSON:
        # Per chunk: without a request timeout (the default) a timeout context is pure overhead,
        # about a fifth of the proxy's CPU on a short generation.
        if self._deadline is None:
            return await self._guard.wait(anext(self._rest))
        async with asyncio.timeout_at(self._deadline):
            return await self._guard.wait(anext(self._rest))

    async def aclose(self) -> None:
        self._guard.close()
        try:
            await close_stream(self._rest)
        finally:
            self.route.lease.release()


class Dispatcher:
    def __init__(self, cluster: Cluster, router: Router, metrics: ProxyMetrics, *,
                 first_byte_timeout: float | None, request_timeout: float | None, max_attempts: int,
                 stall_timeout: float | None = None) -> None:
        self.cluster = cluster
        self.router = router
        self.metrics = metrics
        self.first_byte_timeout = first_byte_timeout
        self.request_timeout = request_timeout
        self.max_attempts = max(1, max_attempts)
        #: Seconds a stream may go silent (None: a few seconds past the host's measured gap between tokens).
        self.stall_timeout = stall_timeout
        self.in_flight = InFlightCalls(cluster)
        #: Called before routing; may place a model no host has and return the request to route instead.
        self.on_missing: Callable[[RouteRequest], Awaitable[RouteRequest]] | None = None

    # ------------------------------------------------------------------ calls
    async def open_stream(self, endpoint: str, request: RouteRequest, body: JSON, call: StreamCall, *,
                          exclude: Collection[str] = (),
                          adapt: Callable[[JSON, Route], JSON] | None = None) -> Upstream:
        """Route, call, and wait for the first chunk, moving to the next host on failure.

        `exclude`: hosts not to try (those a resumed stream already failed on); `adapt`: the body
        for the host picked (a resume gives llama.cpp hosts token ids, see olol.proxy.resume).
        """
        deadline = self._deadline()

        async def start(route: Route) -> tuple[AsyncIterator[JSON], JSON]:
            sent = self._stream_body(body if adapt is None else adapt(body, route), route)
            try:  # a backend builds its request here (e.g. the agent's protobuf): a failure is the request's
                iterator = call(route.candidate.host.backend, sent)
            except Exception as exc:
                raise _request_error(exc) from exc
            first_byte = self._first_byte_deadline(deadline)
            guard = self.in_flight.guard(route.host_id)  # a mark-down of the host ends the wait at once
            try:
                if first_byte is None:  # no timeout configured: a timeout context would be pure overhead
                    first = await guard.wait(anext(iterator))
                else:
                    async with asyncio.timeout_at(first_byte):
                        first = await guard.wait(anext(iterator))
            except StopAsyncIteration:
                raise BackendUnavailable(f"{route.host_id} closed the stream without a reply") from None
            except BaseException:
                await close_stream(iterator)
                raise
            finally:
                guard.close()
                if type(sent) is JsonBody:
                    sent.forget()  # sent (or failed): a long stream does not keep a large body's bytes too
            return iterator, first

        route, (rest, first), retries = await self._failover(endpoint, request, start, exclude)
        # A reply that came whole waited for its generation too: the host's own eval time is not TTFT.
        generation = first.get("eval_duration") if first.get("done") else None
        ttft = route.lease.first_byte(generation / 1e9 if isinstance(generation, (int, float)) else 0.0)
        self.metrics.ttft.labels(route.host_id, route.lease.model).observe(ttft)
        self.metrics.routed(route.lease.model, route.host_id, route.reason, ttft)
        stats = self.cluster.stats.get(route.host_id, route.lease.model)
        stall = stall_timeout(self.stall_timeout, stats.tokens_per_s.value if stats is not None else None)
        guard = self.in_flight.guard(route.host_id, stall)
        return Upstream(self, endpoint, route, first, rest, retries, deadline, guard)

    async def unary(self, endpoint: str, request: RouteRequest, body: JSON, call: UnaryCall) -> tuple[Route, Any, int]:
        """Route a one-shot call (embed), with the same failover; the lease is released when it returns."""
        deadline = self._deadline()

        async def run(route: Route) -> Any:
            first_byte = self._first_byte_deadline(deadline)
            if first_byte is None:  # as in open_stream: no timer when no timeout is configured
                return await call(route.candidate.host.backend, self.upstream_body(body, route))
            async with asyncio.timeout_at(first_byte):
                return await call(route.candidate.host.backend, self.upstream_body(body, route))

        route, result, retries = await self._failover(endpoint, request, run)
        self.metrics.routed(route.lease.model, route.host_id, route.reason, route.lease.first_byte())
        route.lease.release()
        self.metrics.requests.labels(endpoint, route.lease.model, route.host_id, "200").inc()
        return route, result, retries

    @staticmethod
    def upstream_body(body: JSON, route: Route) -> JSON:
        # Under quantization fallback the host is asked for the model it actually has.
        # So is a request whose model was placed on demand as another variant (`on_missing`).
        if route.candidate.exact and normalize(str(body.get("model") or route.model)) == normalize(route.model):
            return body
        return {**body, "model": route.model}

    def _stream_body(self, body: JSON, route: Route) -> JSON:
        """The generate/chat body for this host: `stream: false` stays so only when the reply can come whole.

        A host asked for the whole reply sends nothing until it is done, so the first-byte timeout
        then has to cover the generation too. That is safe when the model is loaded there and the
        host's measured service time is well inside the timeout; otherwise (a cold load, an unmeasured
        host, a long generation) the call is streamed, the timeout covers only the first token, and
        the chunks are folded here, as always.
        """
        upstream = self.upstream_body(body, route)
        if body.get("stream") is False and not self._whole_reply_in_time(route):
            upstream = {**upstream, "stream": True}
        # A body whose own bytes cannot go as they came is encoded only for a host that sends JSON.
        if type(upstream) is JsonBody or (type(upstream) is RawChunk and upstream.raw is not None):
            return upstream
        return JsonBody.wrap(upstream)

    def _whole_reply_in_time(self, route: Route) -> bool:
        if self.first_byte_timeout is None:
            return True
        if not route.candidate.loaded:
            return False
        expected = self.cluster.stats.service_time(route.host_id, route.lease.model)
        return expected is not None and expected * _WHOLE_REPLY_MARGIN <= self.first_byte_timeout

    # ------------------------------------------------------------------ failover
    async def _failover(self, endpoint: str, request: RouteRequest, attempt: Callable[[Route], Awaitable[R]],
                        exclude: Collection[str] = ()) -> tuple[Route, R, int]:
        tried: list[str] = list(exclude)
        last: BaseException | None = None
        if self.on_missing is not None:
            request = await self.on_missing(request)
        for n in range(self.max_attempts):
            try:
                route = await self.router.acquire(request, tried, retry=n > 0 or bool(exclude))
            except NoEligibleHost:
                break
            except OlolError as exc:
                stage = "queue_timeout" if exc.status == 503 else "no_host"
                if exc.status == 503:
                    self.metrics.queue_timeouts.labels(normalize(request.model)).inc()
                self.metrics.errors.labels(endpoint, stage).inc()
                raise
            if route.queued_s:
                self.metrics.queue_wait.labels(normalize(request.model)).observe(route.queued_s)
            try:
                try:
                    result = await attempt(route)
                except TimeoutError:
                    raise
                except Exception as exc:
                    raise _as_upstream_error(route.host_id, exc) from exc
            except (OlolError, TimeoutError) as exc:
                route.lease.failed()
                route.lease.release()
                reason = _retry_reason(exc)
                if reason is None:
                    self.metrics.errors.labels(endpoint, "upstream").inc()
                    raise
                self._host_failed(route, exc, reason)
                tried.append(route.host_id)
                last = exc
                continue
            except BaseException:
                route.lease.release()
                raise
            return route, result, n
        self.metrics.errors.labels(endpoint, "upstream").inc()
        if isinstance(last, OlolError):
            raise last
        if isinstance(last, TimeoutError):
            raise OlolError("no host answered in time", status=504)
        if tried:  # every host with the model was tried already (a resume excludes the ones that failed)
            raise OlolError(f"no other host has model {request.model!r}: tried {', '.join(tried)}", status=503)
        raise ModelNotFound(request.model)

    def _host_failed(self, route: Route, exc: BaseException, reason: str) -> None:
        host = route.candidate.host
        log.info("retrying elsewhere: %s failed before the first byte (%s): %s", host.id, reason, exc)
        self.metrics.retries.labels(host.id, reason).inc()
        if reason == "unavailable":
            self.cluster.mark_down(host, str(exc))
        elif reason == "not_found":
            # Its model list was stale; the next probe brings it back if it really has the model.
            host.models.pop(normalize(route.model), None)

    # ------------------------------------------------------------------ accounting
    def _deadline(self) -> float | None:
        if self.request_timeout is None:
            return None
        return asyncio.get_running_loop().time() + self.request_timeout

    def _first_byte_deadline(self, deadline: float | None) -> float | None:
        if self.first_byte_timeout is None:
            return deadline
        first = asyncio.get_running_loop().time() + self.first_byte_timeout
        return first if deadline is None else min(first, deadline)

    def finished(self, upstream: Upstream, final: JSON, chunks: int) -> None:
        route = upstream.route
        if route.prefix:
            # Indexed once answered, not when sent: until then no other request can reuse it (an engine's
            # slots do not share a prompt in progress); one with the same prefix sent meanwhile is held for
            # this host's slot while that beats evaluating the prefix again (`CacheAware.patience`).
            expected = int(route.reason[6:]) if route.reason.startswith("cache:") else 0
            self.cluster.caches.answered(route.candidate.host, route.model, route.prefix, expected, final)
        else:
            self.cluster.caches.observe(route.host_id, final)
        tokens = final.get("eval_count")
        duration = final.get("eval_duration")
        load = final.get("load_duration")
        load_s = load / 1e9 if isinstance(load, (int, float)) else None
        if isinstance(tokens, int) and isinstance(duration, (int, float)) and duration > 0:
            route.lease.finished(tokens, duration / 1e9, load_s)
            self.metrics.tokens_per_s.labels(route.host_id, route.lease.model).observe(tokens / (duration / 1e9))
        else:
            route.lease.finished(chunks, load_seconds=load_s)
        self.metrics.requests.labels(upstream.endpoint, route.lease.model, route.host_id, "200").inc()

    def failed_mid_stream(self, upstream: Upstream, exc: OlolError) -> None:
        route = upstream.route
        if upstream.count_errors:
            self.metrics.errors.labels(upstream.endpoint, "mid_stream").inc()
        if isinstance(exc, BackendUnavailable):
            self.cluster.mark_down(route.candidate.host, exc.message)
        log.warning("stream from %s broke after the first byte: %s", route.host_id, exc)
