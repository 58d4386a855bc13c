"""One client stream made of the chunks of one or more hosts.

`ResumableStream` looks like the `Upstream` it starts with (`route`, `retries`, iterate once,
`aclose`): the handlers write it out as they would any stream. When the host fails after
its first chunk, with an error that is the host's and not the request's, it opens a
continuation on the next best host (the failed ones excluded) and relays that host's
chunks, so the client sees one answer. The final chunk's counts then cover the whole answer
and it carries `"olol": {"hosts": [...], "resumes": n}`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING

from olol.cluster.backend import JSON
from olol.errors import BackendUnavailable, Cancelled, OlolError
from olol.proxy.resume.continuation import Continuation, plan_continuation
from olol.proxy.resume.transcript import Kind, Transcript

if TYPE_CHECKING:
    from olol.cluster.routing import RouteRequest
    from olol.proxy.dispatch import Dispatcher, StreamCall, Upstream
    from olol.proxy.router import Route

__all__ = ["ResumableStream", "failure_reason"]

log = logging.getLogger(__name__)

# A split model (`dist:` host, olol.proxy.distributed) re-plans around a dead worker and serves again:
# its continuation may go back to it, where the front holds the request until the new plan is up.
_REPLANNED = "dist:"

# Statuses of a mid-stream error that are the host's, not the request's (an error line such as
# "an error was encountered while running the model"). A request's own time limit (504) is not.
_HOST_STATUSES = frozenset({500, 502, 503})


def failure_reason(exc: OlolError) -> str | None:
    """Why the host failed, as a metric label, or None when another host would fail the same way."""
    if isinstance(exc, Cancelled):
        return None
    if isinstance(exc, BackendUnavailable):
        # HostStalled / HostAborted (olol.proxy.liveness) name themselves; transport failures are "unavailable".
        return {"HostStalled": "stall", "HostAborted": "host_down"}.get(type(exc).__name__, "unavailable")
    if exc.status in _HOST_STATUSES:
        return "error"
    return None


def _exact_on_llamacpp(continuation: Continuation) -> Callable[[JSON, Route], JSON] | None:
    """Hosts that continue from token ids get the ids (an exact greedy continuation); others the text."""
    exact = continuation.exact_body
    if exact is None:
        return None
    return lambda body, route: exact if route.candidate.host.kind == "llamacpp" else body


class ResumableStream:
    def __init__(self, dispatcher: Dispatcher, endpoint: str, request: RouteRequest, body: JSON, kind: Kind,
                 calls: Mapping[Kind, StreamCall], first: Upstream, max_resumes: int) -> None:
        self._dispatcher = dispatcher
        self.endpoint = endpoint
        self._request = request
        self._body = body
        self._kind = kind
        self._calls = calls
        self._current = first
        self._max_resumes = max_resumes
        self._first_route = first.route
        self._first_retries = first.retries
        self._reason = "unavailable"
        self.hosts = [first.route.host_id]
        self.resumes = 0

    @property
    def route(self) -> Route:
        """The route the reply started on (its headers are sent before any resume)."""
        return self._first_route

    @property
    def retries(self) -> int:
        return self._first_retries

    async def __aiter__(self) -> AsyncIterator[JSON]:
        transcript = Transcript(self._kind)
        translate: Callable[[JSON], JSON] | None = None
        while True:
            upstream = self._current
            upstream.count_errors = False  # this stream counts its own failure, if it is one
            try:
                async for chunk in upstream:
                    if translate is not None:
                        chunk = translate(chunk)
                    if chunk.get("done"):
                        yield self._final(chunk, transcript)
                        return
                    transcript.add(chunk)
                    yield chunk
                return
            except OlolError as exc:
                continuation = self._plan(exc, transcript)
                if continuation is None:
                    self._dispatcher.metrics.errors.labels(self.endpoint, "mid_stream").inc()
                    raise
                if continuation.remaining == 0:  # the budget was spent when the host died: the answer is whole
                    transcript.host_failed()
                    yield self._final(self._length_final(upstream), transcript)
                    return
                translate = continuation.translate
                await self._resume(exc, continuation, transcript)

    def _plan(self, exc: OlolError, transcript: Transcript) -> Continuation | None:
        failed = self._current.route.host_id
        reason = failure_reason(exc)
        if reason is None:
            return None
        if self.resumes >= self._max_resumes:
            log.warning("not resuming %s after %s failed (%s): %d resumes already", self.endpoint, failed,
                        reason, self.resumes)
            self._dispatcher.metrics.resumes.labels(reason, "limit").inc()
            return None
        continuation = plan_continuation(self._kind, self._body, transcript)
        if isinstance(continuation, str):
            log.warning("not resuming %s after %s failed (%s): %s relayed", self.endpoint, failed, reason,
                        continuation)
            self._dispatcher.metrics.resumes.labels(reason, f"refused_{continuation}").inc()
            return None
        self._reason = reason
        return continuation

    async def _resume(self, exc: OlolError, continuation: Continuation, transcript: Transcript) -> None:
        failed = self._current.route.host_id
        reason = self._reason
        transcript.host_failed()
        began = time.perf_counter()
        try:
            upstream = await self._dispatcher.open_stream(
                self.endpoint, self._request, continuation.body, self._calls[continuation.kind],
                exclude=tuple(h for h in self.hosts if not h.startswith(_REPLANNED)),
                adapt=_exact_on_llamacpp(continuation))
        except OlolError as again:
            log.warning("could not resume %s after %s failed (%s) at token %d: %s", self.endpoint, failed, reason,
                        transcript.tokens, again)
            self._dispatcher.metrics.resumes.labels(reason, "no_host").inc()
            self._dispatcher.metrics.errors.labels(self.endpoint, "mid_stream").inc()
            raise exc from again
        self.resumes += 1
        self.hosts.append(upstream.route.host_id)
        self._current = upstream
        self._dispatcher.metrics.resumes.labels(reason, "resumed").inc()
        self._dispatcher.metrics.resume_gap.observe(time.perf_counter() - began)
        log.warning("resumed %s on %s after %s failed (%s) at token %d: %s", self.endpoint, upstream.route.host_id,
                    failed, reason, transcript.tokens, exc.message)

    def _length_final(self, upstream: Upstream) -> JSON:
        head: JSON = {"model": upstream.route.model, "done": True, "done_reason": "length"}
        if self._kind == "chat":
            return {**head, "message": {"role": "assistant", "content": ""}}
        return {**head, "response": ""}

    def _final(self, chunk: JSON, transcript: Transcript) -> JSON:
        if not self.resumes and not transcript.earlier_tokens:
            return chunk
        final = dict(chunk)
        count = final.get("eval_count")
        final["eval_count"] = transcript.earlier_tokens + (count if isinstance(count, int) else 0)
        duration = final.get("eval_duration")
        final["eval_duration"] = transcript.earlier_eval_ns + (duration if isinstance(duration, int) else 0)
        final["total_duration"] = max(1, time.perf_counter_ns() - transcript.started_ns)
        previous = final.get("olol")  # a host's own note (e.g. `trimmed`) stays beside ours
        final["olol"] = {**(previous if isinstance(previous, dict) else {}), "hosts": list(self.hosts),
                         "resumes": self.resumes}
        return final

    async def aclose(self) -> None:
        await self._current.aclose()
