"""`SessionManager` over a scripted gateway: TTL, turn atomicity, locking, what is sent upstream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from olol.errors import BackendUnavailable, ModelNotFound
from olol.sessions import SessionManager, SessionNotFound, SqliteSessionStore

JSON = dict[str, Any]


class ScriptedStream:
    def __init__(self, chunks: list[JSON], fail: Exception | None) -> None:
        self.host = "fake-host"
        self.headers: Mapping[str, str] = {"X-OLOL-Host": "fake-host"}
        self._chunks = chunks
        self._fail = fail
        self.closed = False

    async def _gen(self) -> AsyncIterator[JSON]:
        for chunk in self._chunks:
            await asyncio.sleep(0)
            yield chunk
        if self._fail is not None:
            raise self._fail

    def __aiter__(self) -> AsyncIterator[JSON]:
        return self._gen()

    async def aclose(self) -> None:
        self.closed = True


class ScriptedGateway:
    """Answers every chat with "ok", stats included; `fail` breaks the next stream after one chunk."""

    def __init__(self) -> None:
        self.bodies: list[JSON] = []
        self.keys: list[str] = []
        self.fail: Exception | None = None
        self.gate: asyncio.Event | None = None
        self.streams: list[ScriptedStream] = []

    def has_model(self, model: str) -> bool:
        return model == "m"

    async def context_length(self, model: str) -> int | None:
        return None

    async def open_chat(self, body: JSON, session_id: str) -> ScriptedStream:
        self.bodies.append(body)
        self.keys.append(session_id)
        if self.gate is not None:
            await self.gate.wait()
        chunks = [{"message": {"role": "assistant", "content": "o"}, "done": False}]
        if self.fail is None:
            chunks += [
                {"message": {"role": "assistant", "content": "k"}, "done": False},
                {
                    "message": {"role": "assistant", "content": ""},
                    "done": True,
                    "eval_count": 2,
                    "eval_duration": 10,
                    "prompt_eval_count": 50,
                    "prompt_eval_duration": 5,
                },
            ]
        stream = ScriptedStream(chunks, self.fail)
        self.streams.append(stream)
        return stream


@pytest.fixture
async def manager() -> AsyncIterator[SessionManager]:
    m = SessionManager(SqliteSessionStore(None), ScriptedGateway())
    await m.start()
    yield m
    await m.stop()


def gateway(m: SessionManager) -> ScriptedGateway:
    assert isinstance(m.gateway, ScriptedGateway)
    return m.gateway


async def _turn(m: SessionManager, sid: str, text: str) -> list[JSON]:
    turn = await m.open_turn(sid, text)
    return [c async for c in turn]


async def test_turn_is_sent_with_history_and_recorded(manager: SessionManager) -> None:
    s = await manager.create("m", system="sys", options={"temperature": 0}, keep_alive=-1)
    chunks = await _turn(manager, s.id, "hi")
    assert chunks[-1]["olol"] == {
        "session": s.id,
        "host": "fake-host",
        "trimmed": 0,
        "context_length": 4096,
        "prompt_tokens": chunks[-1]["olol"]["prompt_tokens"],
    }
    await _turn(manager, s.id, "again")
    body = gateway(manager).bodies[-1]
    assert [m["content"] for m in body["messages"]] == ["sys", "hi", "ok", "again"]
    assert body["options"] == {"temperature": 0} and body["keep_alive"] == -1 and body["stream"] is True
    assert gateway(manager).keys == [s.id, s.id]  # the affinity key is the session id
    got = await manager.get(s.id)
    assert [m.content for m in got.history] == ["sys", "hi", "ok", "again", "ok"]
    assert got.host == "fake-host" and all(st.closed for st in gateway(manager).streams)


async def test_broken_stream_records_nothing_and_frees_the_session(manager: SessionManager) -> None:
    s = await manager.create("m")
    gateway(manager).fail = BackendUnavailable("host died")
    with pytest.raises(BackendUnavailable):
        await _turn(manager, s.id, "lost")
    gateway(manager).fail = None
    await asyncio.wait_for(_turn(manager, s.id, "kept"), 2)  # the lock was released
    assert [m.content for m in (await manager.get(s.id)).history] == ["kept", "ok"]


async def test_abandoned_turn_records_nothing(manager: SessionManager) -> None:
    s = await manager.create("m")
    turn = await manager.open_turn(s.id, "half")
    async for _ in turn:
        break
    await turn.aclose()
    assert len((await manager.get(s.id)).history) == 0
    await asyncio.wait_for(_turn(manager, s.id, "next"), 2)  # and the session is free again


async def test_unknown_model_and_session(manager: SessionManager) -> None:
    with pytest.raises(ModelNotFound):
        await manager.create("other")
    with pytest.raises(SessionNotFound):
        await manager.open_turn("nope", "hi")
    with pytest.raises(SessionNotFound):
        await manager.delete("nope")


async def test_deleted_during_a_turn(manager: SessionManager) -> None:
    s = await manager.create("m")
    turn = await manager.open_turn(s.id, "hi")
    await manager.delete(s.id)
    chunks = [c async for c in turn]
    assert chunks[-1]["done"] and not turn.recorded
    with pytest.raises(SessionNotFound):
        await manager.get(s.id)


async def test_idle_sessions_expire() -> None:
    m = SessionManager(SqliteSessionStore(None), ScriptedGateway(), ttl=0.3, sweep_interval=0.1)
    await m.start()
    try:
        idle = await m.create("m")
        busy = await m.create("m")
        for _ in range(4):
            await asyncio.sleep(0.1)
            await _turn(m, busy.id, "still here")  # activity renews the TTL
        assert [s.id for s in await m.list()] == [busy.id]
        with pytest.raises(SessionNotFound):
            await m.get(idle.id)
        await asyncio.sleep(0.5)
        assert await m.list() == [] and await m.store.list() == []  # swept from the store too
    finally:
        await m.stop()


async def test_no_ttl_means_never(manager: SessionManager) -> None:
    s = await manager.create("m")
    assert manager.ttl is None and await manager.sweep() == 0
    assert (await manager.get(s.id)).expires_at(manager.ttl) == 0
