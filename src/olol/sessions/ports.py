"""What the session layer needs from the outside: somewhere to store sessions, somewhere to chat.

`SqliteSessionStore` implements `SessionStore`; the proxy implements
`ChatGateway` over its router and dispatcher (`olol.proxy.session_gateway`).
Tests may implement either with a few lines.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Protocol

from olol.cluster.backend import JSON
from olol.sessions.model import HistoryMessage, Session

__all__ = ["ChatGateway", "ChatStream", "SessionStore"]


class SessionStore(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def create(self, session: Session) -> None:
        """Persist a new session with its initial history; durable when this returns."""

    async def get(self, session_id: str) -> Session | None:
        """The session with its full history, or None."""

    async def list(self, model: str | None = None) -> list[Session]:
        """Every session (without histories), most recently active first."""

    async def delete(self, session_id: str) -> bool: ...

    async def append_turn(
        self, session_id: str, messages: Sequence[HistoryMessage], host: str, updated_at: int
    ) -> bool:
        """Append one completed turn atomically; False if the session no longer exists."""

    async def expire(self, idle_before: int) -> int:
        """Delete sessions idle since before `idle_before` (unix ns); returns how many."""


class ChatStream(Protocol):
    """An upstream chat that has started on one host."""

    host: str
    headers: Mapping[str, str]  # where and how it was routed, for HTTP replies

    def __aiter__(self) -> AsyncIterator[JSON]: ...

    async def aclose(self) -> None: ...


class ChatGateway(Protocol):
    def has_model(self, model: str) -> bool:
        """Whether any host (up or down) has the model, so a session for it can be created."""

    async def context_length(self, model: str) -> int | None:
        """The context window hosts serve the model with, when it can be found out."""

    async def open_chat(self, body: JSON, session_id: str) -> ChatStream:
        """Route an Ollama `/api/chat` body, pinned by `session_id`, and start it."""
