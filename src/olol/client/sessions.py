"""Chat sessions for the Python clients: `client.session(model)` then `.chat(message)`.

The proxy keeps the history; the client sends only each new message. The
async `AsyncChatSession` does the work; `ChatSession` is its blocking twin,
driven on the sync client's private loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from olol.bridge import LoopThread
from olol.client.models import ChatResponse, Message, from_json
from olol.client.session_transport import SessionTransport
from olol.cluster.backend import JSON

__all__ = ["AsyncChatSession", "ChatSession", "SessionInfo", "SessionMessage"]


@dataclass
class SessionMessage(Message):
    """A message of a session's history: an Ollama message plus what the proxy measured."""

    created_at: str = ""
    tokens: int = 0
    tokens_estimated: bool = True
    duration: int = 0  # ns: prompt evaluation (user) or generation (assistant)


@dataclass
class SessionInfo:
    id: str = ""
    model: str = ""
    created_at: str = ""
    updated_at: str = ""
    expires_at: str | None = None
    host: str = ""
    message_count: int = 0
    tokens: int = 0
    options: JSON = field(default_factory=dict)
    keep_alive: Any = None
    messages: list[SessionMessage] = field(default_factory=list)  # empty in listings

    @classmethod
    def parse(cls, data: JSON) -> SessionInfo:
        info = from_json(cls, data)
        info.messages = [from_json(SessionMessage, m) for m in data.get("messages") or []]
        return info


def _message(message: str | JSON) -> JSON:
    return {"role": "user", "content": message} if isinstance(message, str) else message


class AsyncChatSession:
    """One conversation. Created on the proxy by `start()` (or the first `chat`); `session_id` resumes one."""

    def __init__(
        self,
        transport: SessionTransport,
        model: str,
        *,
        session_id: str | None = None,
        system: str | None = None,
        options: JSON | None = None,
        messages: list[JSON] | None = None,
        keep_alive: Any = None,
    ) -> None:
        self._transport = transport
        self.model = model
        self.id = session_id
        fields = {"system": system, "options": options, "messages": messages, "keep_alive": keep_alive}
        self._create: JSON = {"model": model, **{k: v for k, v in fields.items() if v is not None}}
        self.last_turn: JSON = {}  # the proxy's `olol` report of the last turn: host, trimmed, ...

    async def start(self) -> AsyncChatSession:
        if self.id is None:
            created = await self._transport.create(self._create)
            self.id = str(created["id"])
        return self

    async def chat(self, message: str | JSON, **kwargs: Any) -> AsyncIterator[ChatResponse]:
        """Send one message (text, or an Ollama message object); stream the reply.

        `kwargs`: options, format, think, tools, keep_alive, for this turn only.
        """
        await self.start()
        assert self.id is not None
        async for chunk in self._transport.chat(self.id, _message(message), **kwargs):
            if chunk.get("done"):
                self.last_turn = dict(chunk.get("olol") or {})
            yield ChatResponse.parse(chunk)

    async def ask(self, message: str | JSON, **kwargs: Any) -> ChatResponse:
        """`chat`, folded into one response: the whole reply and the final stats."""
        parts: list[str] = []
        last = ChatResponse()
        async for response in self.chat(message, **kwargs):
            parts.append(response.message.content)
            last = response
        last.message.content = "".join(parts)
        return last

    async def info(self) -> SessionInfo:
        """The session as the proxy has it, with the full history."""
        await self.start()
        assert self.id is not None
        return SessionInfo.parse(await self._transport.get(self.id))

    async def history(self) -> list[SessionMessage]:
        return (await self.info()).messages

    async def delete(self) -> None:
        if self.id is not None:
            await self._transport.delete(self.id)


class ChatSession:
    """The blocking twin of `AsyncChatSession` (from `olol.sync.OllamaClient.session`)."""

    def __init__(self, loop: LoopThread, session: AsyncChatSession) -> None:
        self._loop = loop
        self._session = session

    @property
    def id(self) -> str | None:
        return self._session.id

    @property
    def model(self) -> str:
        return self._session.model

    @property
    def last_turn(self) -> JSON:
        return self._session.last_turn

    def chat(self, message: str | JSON, **kwargs: Any) -> Iterator[ChatResponse]:
        return self._loop.iterate(lambda: self._session.chat(message, **kwargs), lambda _cb: None)

    def ask(self, message: str | JSON, **kwargs: Any) -> ChatResponse:
        return self._loop.call(self._session.ask(message, **kwargs))

    def info(self) -> SessionInfo:
        return self._loop.call(self._session.info())

    def history(self) -> list[SessionMessage]:
        return self._loop.call(self._session.history())

    def delete(self) -> None:
        self._loop.call(self._session.delete())
