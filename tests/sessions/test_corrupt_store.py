"""A damaged sessions.db is set aside with a clear log line and a fresh one is used (issue 20).

On d9d1e00 a truncated sessions.db stopped the proxy from starting, and random bytes inside
one made every session request a 500.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from olol.sessions.model import Session
from olol.sessions.sqlite import DB_NAME, SqliteSessionStore


async def _filled(path: Path, sessions: int = 200) -> None:
    store = SqliteSessionStore(path)
    await store.open()
    for i in range(sessions):
        await store.create(Session(id=f"s{i}", model="m", options={"pad": "x" * 2000}))
    await store.close()


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def scribble(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for offset in range(4096, len(data), 4096):  # the first page (the header) stays: the file still opens
        data[offset + 100 : offset + 600] = bytes((offset + i) % 251 for i in range(500))
    path.write_bytes(bytes(data))


def garbage(path: Path) -> None:
    path.write_bytes(b"this is not a database" * 100)


@pytest.mark.parametrize("damage", [truncate, scribble, garbage])
async def test_a_damaged_store_is_set_aside_and_a_fresh_one_serves(
    tmp_path: Path, damage: object, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / DB_NAME
    await _filled(path)
    for extra in tmp_path.glob(f"{DB_NAME}-*"):
        extra.unlink()  # a clean shutdown checkpointed the WAL; what is left is the main file
    damage(path)  # type: ignore[operator]
    store = SqliteSessionStore(path)
    with caplog.at_level(logging.ERROR, logger="olol.sessions.sqlite"):
        await store.open()
    try:
        assert any("is damaged" in r.getMessage() and "moved to" in r.getMessage() for r in caplog.records)
        assert await store.list() == []
        await store.create(Session(id="new", model="m"))
        assert (await store.get("new")) is not None
    finally:
        await store.close()
    assert len(list(tmp_path.glob(f"{DB_NAME}.corrupt-*"))) >= 1


async def test_a_store_from_before_owners_opens_with_keyless_sessions(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / DB_NAME
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE sessions (id TEXT PRIMARY KEY, model TEXT NOT NULL, options TEXT NOT NULL, keep_alive TEXT,"
        " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, host TEXT NOT NULL DEFAULT '',"
        " message_count INTEGER NOT NULL DEFAULT 0, tokens INTEGER NOT NULL DEFAULT 0);"
        "INSERT INTO sessions VALUES ('old', 'm', '{}', NULL, 1, 1, '', 0, 0);"
        "PRAGMA user_version=1;"
    )
    conn.close()
    store = SqliteSessionStore(path)
    await store.open()
    try:
        old = await store.get("old")
        assert old is not None and old.owner == ""
    finally:
        await store.close()
    assert not list(tmp_path.glob(f"{DB_NAME}.corrupt-*"))
