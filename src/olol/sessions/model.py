"""The session domain: a `Session` is a model, its options and a `ChatHistory` of `HistoryMessage`s.

Plain data and no I/O. Times are unix nanoseconds (as in olol.proto), shown
to HTTP clients as RFC 3339 like Ollama's `created_at`.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from olol.cluster.backend import JSON
from olol.errors import BadRequest, OlolError
from olol.wire.values import rfc3339_from_ns

__all__ = [
    "MESSAGE_OVERHEAD",
    "ROLES",
    "ChatHistory",
    "HistoryMessage",
    "Session",
    "SessionNotFound",
    "estimate_tokens",
    "new_session_id",
    "now_ns",
]

ROLES = frozenset({"system", "user", "assistant", "tool"})
# Fields of an Ollama chat message besides role and content, kept as sent.
_EXTRA_KEYS = ("thinking", "images", "tool_calls", "tool_name")
# Tokens a chat template adds around each message (role markers, separators);
# counted whenever the history is fitted so estimates err on the side of fitting.
MESSAGE_OVERHEAD = 4


class SessionNotFound(OlolError):
    status = 404

    def __init__(self, session_id: str) -> None:
        super().__init__(f'session "{session_id}" not found')
        self.session_id = session_id


def now_ns() -> int:
    return time.time_ns()


def new_session_id() -> str:
    # Random, not sequential: the id is the affinity key, and random keys spread evenly on the ring.
    return uuid.uuid4().hex


def estimate_tokens(text: str) -> int:
    """A tokenizer-free guess (about 4 bytes a token for BPE vocabularies), for text no backend has counted."""
    return math.ceil(len(text.encode()) / 4)


@dataclass
class HistoryMessage:
    """One message of a conversation and what the proxy measured about it."""

    role: str
    content: str = ""
    extra: JSON = field(default_factory=dict)  # thinking, images, tool_calls, tool_name
    created_at: int = field(default_factory=now_ns)
    tokens: int = 0
    tokens_estimated: bool = True  # False once a backend's count replaced the estimate
    duration: int = 0  # ns: prompt evaluation for a user message, generation for an assistant reply

    @classmethod
    def from_ollama(cls, message: Any, *, allowed: frozenset[str] = ROLES) -> HistoryMessage:
        """Validate an Ollama chat message (`{"role", "content", ...}`) and estimate its size."""
        if not isinstance(message, dict):
            raise BadRequest("message must be an object with role and content")
        role = message.get("role", "user")
        if role not in allowed:
            raise BadRequest(f"message role must be one of {', '.join(sorted(allowed))}, got {role!r}")
        content = message.get("content") or ""
        if not isinstance(content, str):
            raise BadRequest("message content must be a string")
        extra = {k: message[k] for k in _EXTRA_KEYS if message.get(k)}
        return cls(role=role, content=content, extra=extra, tokens=estimate_tokens(content))

    @property
    def cost(self) -> int:
        """Context tokens this message takes when sent again."""
        return self.tokens + MESSAGE_OVERHEAD

    def to_ollama(self) -> JSON:
        """As a backend wants it in `messages`."""
        return {"role": self.role, "content": self.content, **self.extra}

    def to_json(self) -> JSON:
        """As `GET /api/sessions/{id}` shows it."""
        return {
            **self.to_ollama(),
            "created_at": rfc3339_from_ns(self.created_at),
            "tokens": self.tokens,
            "tokens_estimated": self.tokens_estimated,
            "duration": self.duration,
        }


class ChatHistory(Sequence[HistoryMessage]):
    """A conversation in order: system prompt(s) first, then turns (a user message and what answers it)."""

    def __init__(self, messages: Sequence[HistoryMessage] = ()) -> None:
        self._messages = list(messages)

    def __getitem__(self, index: Any) -> Any:
        return self._messages[index]

    def __len__(self) -> int:
        return len(self._messages)

    def __iter__(self) -> Iterator[HistoryMessage]:
        return iter(self._messages)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ChatHistory) and self._messages == other._messages

    __hash__ = None  # type: ignore[assignment]  # mutable

    def append(self, *messages: HistoryMessage) -> None:
        self._messages.extend(messages)

    @property
    def tokens(self) -> int:
        return sum(m.tokens for m in self._messages)

    @property
    def system(self) -> list[HistoryMessage]:
        return [m for m in self._messages if m.role == "system"]

    def turns(self) -> list[list[HistoryMessage]]:
        """Non-system messages grouped into turns, each starting at a user message.

        Trimming drops whole turns: a reply without the question it answers (or a
        tool result without its call) would confuse the model more than either's absence.
        """
        turns: list[list[HistoryMessage]] = []
        for message in self._messages:
            if message.role == "system":
                continue
            if message.role == "user" or not turns:
                turns.append([])
            turns[-1].append(message)
        return turns


@dataclass
class Session:
    id: str
    model: str
    options: JSON = field(default_factory=dict)  # sent with every turn (num_ctx, temperature, ...)
    keep_alive: Any = None  # sent with every turn when set
    created_at: int = field(default_factory=now_ns)
    updated_at: int = 0  # last completed turn (or creation): the idle TTL counts from here
    host: str = ""  # the host that served the last turn
    history: ChatHistory = field(default_factory=ChatHistory)
    message_count: int = 0  # kept by the store, so listings need not load histories
    tokens: int = 0
    #: Who may see it: the API key that created it (its safe name); "" when created without keys.
    owner: str = ""

    def __post_init__(self) -> None:
        self.updated_at = self.updated_at or self.created_at
        if self.history and not self.message_count:
            self.message_count, self.tokens = len(self.history), self.history.tokens

    def expires_at(self, ttl: float | None) -> int:
        return self.updated_at + int(ttl * 1e9) if ttl else 0

    def summary(self, ttl: float | None) -> JSON:
        out: JSON = {
            "id": self.id,
            "model": self.model,
            "created_at": rfc3339_from_ns(self.created_at),
            "updated_at": rfc3339_from_ns(self.updated_at),
            "expires_at": rfc3339_from_ns(self.expires_at(ttl)) if ttl else None,
            "host": self.host,
            "message_count": self.message_count,
            "tokens": self.tokens,
        }
        if self.options:
            out["options"] = self.options
        if self.keep_alive is not None:
            out["keep_alive"] = self.keep_alive
        return out

    def to_json(self, ttl: float | None) -> JSON:
        return {**self.summary(ttl), "messages": [m.to_json() for m in self.history]}
