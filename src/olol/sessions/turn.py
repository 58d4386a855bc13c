"""One chat turn of a session: stream the reply through, then record the turn.

A turn is recorded whole or not at all: the user's message and the complete
reply are written in one transaction, *before* the final chunk is passed on,
so a client that saw `done: true` can rely on the turn being in the history
(even across a SIGKILL of the proxy). A turn that breaks (host lost mid-reply,
client gone) leaves the history as it was, and the same message can be sent again.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from olol.cluster.backend import JSON
from olol.errors import BackendUnavailable
from olol.sessions.model import HistoryMessage, Session, estimate_tokens, now_ns
from olol.sessions.ports import ChatStream, SessionStore
from olol.sessions.trim import Window

__all__ = ["Turn"]

log = logging.getLogger(__name__)

TRIMMED_HEADER = "X-OLOL-Trimmed"
SESSION_ID_HEADER = "X-OLOL-Session"


class _Reply:
    """The assistant message a stream spells out, piece by piece (the session layer keeps no proxy imports)."""

    def __init__(self) -> None:
        self.content: list[str] = []
        self.thinking: list[str] = []
        self.tool_calls: list[JSON] = []
        self.images: list[Any] = []

    def add(self, chunk: JSON) -> None:
        message = chunk.get("message") or {}
        self.content.append(str(message.get("content") or ""))
        self.thinking.append(str(message.get("thinking") or ""))
        self.tool_calls += message.get("tool_calls") or []
        self.images += message.get("images") or []

    def message(self) -> JSON:
        return {
            "role": "assistant",
            "content": "".join(self.content),
            "thinking": "".join(self.thinking),
            "tool_calls": self.tool_calls,
            "images": self.images,
        }


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


class Turn:
    """Iterate once for the reply's chunks (Ollama's chat format); the last one carries `olol`."""

    def __init__(
        self,
        session: Session,
        user: HistoryMessage,
        window: Window,
        context_length: int,
        stream: ChatStream,
        store: SessionStore,
        release: Callable[[], None],
    ) -> None:
        self.session = session
        self.user = user
        self.window = window
        self.context_length = context_length
        self._stream = stream
        self._store = store
        self._release: Callable[[], None] | None = release
        self.recorded = False

    @property
    def host(self) -> str:
        return self._stream.host

    @property
    def info(self) -> JSON:
        """How the turn was served: the `olol` field of the final chunk."""
        return {
            "session": self.session.id,
            "host": self.host,
            "trimmed": self.window.trimmed,
            "context_length": self.context_length,
            "prompt_tokens": self.window.tokens,
        }

    @property
    def headers(self) -> dict[str, str]:
        return {**self._stream.headers, SESSION_ID_HEADER: self.session.id, TRIMMED_HEADER: str(self.window.trimmed)}

    async def __aiter__(self) -> AsyncIterator[JSON]:
        reply = _Reply()
        try:
            async for chunk in self._stream:
                reply.add(chunk)
                if chunk.get("done"):
                    await self._record(reply, chunk)
                    yield {**chunk, "olol": self.info}
                    return
                yield chunk
            raise BackendUnavailable(f"{self.host} ended the reply without a final chunk")
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()

    async def _record(self, reply: _Reply, final: JSON) -> None:
        assistant = HistoryMessage.from_ollama(reply.message())
        if (count := _int(final.get("eval_count"))) is not None:
            assistant.tokens, assistant.tokens_estimated = count, False
        assistant.duration = _int(final.get("eval_duration")) or 0
        self.user.duration = _int(final.get("prompt_eval_duration")) or 0
        self._count_prompt(_int(final.get("prompt_eval_count")))
        recorded = await self._store.append_turn(self.session.id, [self.user, assistant], self.host, now_ns())
        if not recorded:
            log.info("session %s was deleted during a turn; the reply is not recorded", self.session.id)
        self.recorded = recorded
        self.session.history.append(self.user, assistant)

    def _count_prompt(self, prompt_tokens: int | None) -> None:
        """Replace the new message's estimate with the backend's count where it can be derived.

        A backend reports the whole prompt's tokens; what the rest of the prompt took
        is known from earlier turns, so the difference is this message (its template
        markers included). Backends that count only tokens missing from their prompt
        cache report less than the history alone: then the estimate stays.
        """
        if prompt_tokens is None:
            return
        sent_before = sum(m.tokens for m in self.window.messages)
        own = prompt_tokens - sent_before
        if own > 0 and own <= max(4 * estimate_tokens(self.user.content), 64):
            self.user.tokens, self.user.tokens_estimated = own, False
