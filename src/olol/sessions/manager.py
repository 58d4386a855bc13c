"""`SessionManager`: create, read, list, delete sessions, and open their chat turns.

Turns of one session run one at a time (a per-session lock held for the
whole turn): two concurrent messages would otherwise both be answered from
the same history and then both be appended, interleaving the conversation.
Different sessions never wait for each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from olol.cluster import normalize
from olol.cluster.backend import JSON
from olol.errors import BadRequest, ModelNotFound
from olol.sessions.model import ChatHistory, HistoryMessage, Session, SessionNotFound, new_session_id, now_ns
from olol.sessions.ports import ChatGateway, SessionStore
from olol.sessions.trim import DEFAULT_CONTEXT, DropOldestTurns, TrimPolicy, prompt_budget, requested_context
from olol.sessions.turn import Turn

__all__ = ["TURN_KEYS", "SessionManager"]

log = logging.getLogger(__name__)

# Request fields a turn passes on to the model as given (besides options, merged over the session's).
TURN_KEYS = ("format", "think", "tools", "keep_alive")
_TURN_ROLES = frozenset({"user", "tool"})


class _KeyedLocks:
    """One asyncio.Lock per key, existing only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def _drop(self, key: str) -> None:
        lock, users = self._locks[key]
        if users <= 1:
            del self._locks[key]
        else:
            self._locks[key] = (lock, users - 1)

    async def acquire(self, key: str) -> Callable[[], None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            await lock.acquire()
        except BaseException:
            self._drop(key)
            raise

        def release() -> None:
            lock.release()
            self._drop(key)

        return release

    def __len__(self) -> int:
        return len(self._locks)


class SessionManager:
    def __init__(
        self,
        store: SessionStore,
        gateway: ChatGateway,
        *,
        ttl: float | None = None,
        policy: TrimPolicy | None = None,
        sweep_interval: float | None = None,
    ) -> None:
        self.store = store
        self.gateway = gateway
        self.ttl = ttl or None  # 0 means "never expire"
        self.policy: TrimPolicy = policy or DropOldestTurns()
        # Expired sessions are hidden at once (see `_live`); the sweep only reclaims their space.
        self.sweep_interval = sweep_interval or (min(60.0, max(1.0, self.ttl / 4)) if self.ttl else None)
        self._locks = _KeyedLocks()
        self._sweeper: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self.store.open()
        if self.sweep_interval is not None and self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(self.sweep_interval), name="olol-session-ttl")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        await self.store.close()

    async def sweep(self) -> int:
        """Delete sessions idle longer than the TTL; returns how many."""
        if self.ttl is None:
            return 0
        removed = await self.store.expire(now_ns() - int(self.ttl * 1e9))
        if removed:
            log.info("expired %d idle session(s)", removed)
        return removed

    async def _sweep_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep()
            except Exception:  # a failed sweep is retried next time; the loop must outlive it
                log.exception("session expiry sweep failed")

    def _live(self, session: Session | None) -> bool:
        return session is not None and (self.ttl is None or session.expires_at(self.ttl) > now_ns())

    # ------------------------------------------------------------------ CRUD
    async def create(
        self,
        model: str,
        *,
        system: str | None = None,
        options: JSON | None = None,
        messages: Sequence[Any] = (),
        keep_alive: Any = None,
        owner: str = "",
    ) -> Session:
        if not isinstance(model, str) or not model.strip():
            raise BadRequest("model is required")
        if options is not None and not isinstance(options, dict):
            raise BadRequest("options must be an object")
        if not self.gateway.has_model(model):
            raise ModelNotFound(model)
        history = ChatHistory([HistoryMessage.from_ollama({"role": "system", "content": system})] if system else [])
        history.append(*(HistoryMessage.from_ollama(m) for m in messages))
        session = Session(
            id=new_session_id(), model=model, options=dict(options or {}), keep_alive=keep_alive, history=history,
            owner=owner,
        )
        await self.store.create(session)
        return session

    # `owner`: whose sessions the caller may see; None sees every one (an admin key, keys off, gRPC).
    # Another owner's session is "not found", exactly like a missing one: its existence is not told.
    async def get(self, session_id: str, owner: str | None = None) -> Session:
        session = await self.store.get(session_id)
        if session is None or not self._live(session) or (owner is not None and session.owner != owner):
            raise SessionNotFound(session_id)
        return session

    async def list(self, model: str | None = None, owner: str | None = None) -> list[Session]:
        return [s for s in await self.store.list(model) if self._live(s) and owner in (None, s.owner)]

    async def delete(self, session_id: str, owner: str | None = None) -> None:
        if owner is not None:
            await self.get(session_id, owner)
        if not await self.store.delete(session_id):
            raise SessionNotFound(session_id)

    # ------------------------------------------------------------------ chat
    async def open_turn(
        self,
        session_id: str,
        message: Any,
        *,
        options: JSON | None = None,
        extra: JSON | None = None,
        model: str | None = None,
        owner: str | None = None,
    ) -> Turn:
        """Start the session's next turn; iterate the `Turn` for the reply (it records itself).

        `model`, when a client names one (Ollama clients always do), must be the session's.
        """
        if isinstance(message, str):
            message = {"role": "user", "content": message}
        user = HistoryMessage.from_ollama(message, allowed=_TURN_ROLES)
        if options is not None and not isinstance(options, dict):
            raise BadRequest("options must be an object")
        release = await self._locks.acquire(session_id)
        try:
            session = await self.get(session_id, owner)
            if model and normalize(model) != normalize(session.model):
                raise BadRequest(f'session "{session_id}" is a conversation with "{session.model}", not "{model}"')
            merged = {**session.options, **(options or {})}
            context_length = requested_context(merged) or await self.gateway.context_length(session.model)
            context_length = context_length or DEFAULT_CONTEXT
            window = self.policy.fit(session.history, user, prompt_budget(context_length, merged))
            body: JSON = {
                "model": session.model,
                "messages": [m.to_ollama() for m in window.messages] + [user.to_ollama()],
                "stream": True,  # always streamed upstream; `stream: false` is folded for the client
            }
            if merged:
                body["options"] = merged
            if session.keep_alive is not None:
                body["keep_alive"] = session.keep_alive
            body.update({k: v for k, v in (extra or {}).items() if k in TURN_KEYS and v is not None})
            stream = await self.gateway.open_chat(body, session_id)
        except BaseException:
            release()
            raise
        return Turn(session, user, window, context_length, stream, self.store, release)
