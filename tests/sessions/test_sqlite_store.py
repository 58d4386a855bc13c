"""`SqliteSessionStore`: durable, WAL, group commit, and never in the event loop's way."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from olol.sessions import ChatHistory, HistoryMessage, Session, SqliteSessionStore
from olol.sessions.model import new_session_id, now_ns


def _session(model: str = "m", n: int = 1) -> Session:
    history = ChatHistory([HistoryMessage("system", "sys", tokens=3)] * n)
    return Session(id=new_session_id(), model=model, options={"num_ctx": 512}, history=history)


def _turn(i: int) -> list[HistoryMessage]:
    return [
        HistoryMessage("user", f"q{i}", tokens=2, tokens_estimated=False, duration=5),
        HistoryMessage("assistant", f"a{i}", extra={"thinking": "hmm"}, tokens=7, duration=9),
    ]


async def test_round_trip_and_reopen(tmp_path: Path) -> None:
    store = SqliteSessionStore(tmp_path / "s.db")
    await store.open()
    session = _session()
    await store.create(session)
    assert await store.append_turn(session.id, _turn(0), "host-a", now_ns())
    assert not await store.append_turn("missing", _turn(1), "host-a", now_ns())
    await store.close()

    reopened = SqliteSessionStore(tmp_path / "s.db")
    await reopened.open()
    got = await reopened.get(session.id)
    await reopened.close()
    assert got is not None and got.host == "host-a" and got.options == {"num_ctx": 512}
    assert [(m.role, m.content, m.tokens, m.tokens_estimated, m.duration, m.extra) for m in got.history] == [
        ("system", "sys", 3, True, 0, {}),
        ("user", "q0", 2, False, 5, {}),
        ("assistant", "a0", 7, True, 9, {"thinking": "hmm"}),
    ]
    assert got.message_count == 3 and got.tokens == 12 and got.updated_at > got.created_at


async def test_wal_mode_and_full_sync(tmp_path: Path) -> None:
    store = SqliteSessionStore(tmp_path / "s.db")
    await store.open()
    await store.create(_session())
    await store.close()
    with sqlite3.connect(tmp_path / "s.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_list_delete_expire(tmp_path: Path) -> None:
    store = SqliteSessionStore(None)  # in memory: the same code path
    await store.open()
    old, new, other = _session(), _session(), _session(model="x")
    old.created_at = old.updated_at = now_ns() - 10**12
    for s in (old, new, other):
        await store.create(s)
    assert [s.id for s in await store.list("m")] == [new.id, old.id]
    assert len(await store.list()) == 3 and (await store.list())[0].history == ChatHistory()
    assert await store.expire(now_ns() - 10**9) == 1
    assert await store.get(old.id) is None
    assert await store.delete(new.id) and not await store.delete(new.id)
    await store.close()


async def test_a_failing_job_does_not_spoil_its_batch(tmp_path: Path) -> None:
    store = SqliteSessionStore(tmp_path / "s.db")
    await store.open()
    dup = _session()
    await store.create(dup)
    fresh = [_session() for _ in range(20)]
    results = await asyncio.gather(store.create(dup), *(store.create(s) for s in fresh), return_exceptions=True)
    await store.close()
    assert isinstance(results[0], sqlite3.IntegrityError) and results[1:] == [None] * 20
    store = SqliteSessionStore(tmp_path / "s.db")
    await store.open()
    assert len(await store.list()) == 21
    await store.close()


async def test_concurrent_writes_share_commits(tmp_path: Path) -> None:
    store = SqliteSessionStore(tmp_path / "s.db")
    await store.open()
    sessions = [_session() for _ in range(500)]
    await asyncio.gather(*(store.create(s) for s in sessions))
    await asyncio.gather(*(store.append_turn(s.id, _turn(i), "h", now_ns()) for i, s in enumerate(sessions)))
    commits = store.commits
    assert len(await store.list()) == 500
    await store.close()
    assert commits < 100  # 1,000 writes, group-committed (each commit an fsync)


async def test_a_blocked_database_does_not_block_the_event_loop(tmp_path: Path) -> None:
    store = SqliteSessionStore(tmp_path / "s.db")
    await store.open()
    other = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process holds the database: the store's write must wait
    write = asyncio.create_task(store.create(_session()))
    ticks = 0
    deadline = time.perf_counter() + 0.5
    while time.perf_counter() < deadline:
        await asyncio.sleep(0.005)
        ticks += 1
    assert not write.done()
    other.execute("COMMIT")
    other.close()
    await asyncio.wait_for(write, 10)
    await store.close()
    # Had sqlite run on the loop, the loop would have stood still for the whole half second.
    assert ticks >= 10


async def test_closed_store_refuses_work(tmp_path: Path) -> None:
    store = SqliteSessionStore(tmp_path / "s.db")
    with pytest.raises(RuntimeError):
        await store.get("x")
    await store.open()
    await store.close()
    await store.close()  # idempotent


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "s.db") as conn:
        conn.execute("PRAGMA user_version=99")
    with pytest.raises(RuntimeError, match="newer olol"):
        await SqliteSessionStore(tmp_path / "s.db").open()
