"""`SqliteSessionStore`: sessions in one SQLite file, written from a thread of its own.

Why a dedicated thread: sqlite3 calls block (disk, fsync), and the proxy's
event loop must never wait on them. Every call is queued to that one thread,
which owns the only connection, and the caller awaits a future.

Why group commit: 1,000 clients creating sessions at once must not pay 1,000
fsyncs in a row. The thread takes every job queued so far, runs each in its
own savepoint (so one failing job does not undo the others) inside one
transaction, commits once, then answers all of them. A caller is answered only
after its commit, so whatever it was told happened survives a SIGKILL.

WAL journal with `synchronous=FULL`: readers never block the writer, and a
committed turn survives even a power cut, not just a killed process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from olol.sessions.model import ChatHistory, HistoryMessage, Session

__all__ = ["DB_NAME", "SqliteSessionStore"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Job = tuple[Callable[[sqlite3.Connection], Any], "Future[Any]"]

DB_NAME = "sessions.db"
_SCHEMA_VERSION = 2  # 2: sessions.owner
_MAX_BATCH = 512  # jobs per transaction: bounds how long one commit keeps the others waiting
_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    options TEXT NOT NULL,
    keep_alive TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    host TEXT NOT NULL DEFAULT '',
    message_count INTEGER NOT NULL DEFAULT 0,
    tokens INTEGER NOT NULL DEFAULT 0,
    owner TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS sessions_updated ON sessions(updated_at);
CREATE TABLE IF NOT EXISTS messages (
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    extra TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    tokens_estimated INTEGER NOT NULL,
    duration INTEGER NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
"""
_SESSION_COLUMNS = "id, model, options, keep_alive, created_at, updated_at, host, message_count, tokens, owner"
_STOP = object()


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _session_row(row: tuple[Any, ...]) -> Session:
    sid, model, options, keep_alive, created, updated, host, count, tokens, owner = row
    return Session(
        id=sid,
        model=model,
        options=json.loads(options),
        keep_alive=json.loads(keep_alive) if keep_alive is not None else None,
        created_at=created,
        updated_at=updated,
        host=host,
        message_count=count,
        tokens=tokens,
        owner=owner,
    )


def _message_row(row: tuple[Any, ...]) -> HistoryMessage:
    role, content, extra, created, tokens, estimated, duration = row
    return HistoryMessage(
        role=role,
        content=content,
        extra=json.loads(extra),
        created_at=created,
        tokens=tokens,
        tokens_estimated=bool(estimated),
        duration=duration,
    )


def _insert_messages(
    conn: sqlite3.Connection, session_id: str, first_seq: int, messages: Sequence[HistoryMessage]
) -> None:
    conn.executemany(
        "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                session_id,
                first_seq + i,
                m.role,
                m.content,
                _dumps(m.extra),
                m.created_at,
                m.tokens,
                int(m.tokens_estimated),
                m.duration,
            )
            for i, m in enumerate(messages)
        ],
    )


class SqliteSessionStore:
    """Implements `olol.sessions.ports.SessionStore`. `path=None` keeps everything in memory."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._jobs: queue.SimpleQueue[Job | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.commits = 0  # transactions: with group commit, far fewer than calls under load

    # ------------------------------------------------------------------ lifecycle
    async def open(self) -> None:
        if self._thread is not None:
            return
        ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="olol-sessions-db", daemon=True)
        self._thread.start()
        await asyncio.wrap_future(ready)

    async def close(self) -> None:
        """Finish every queued job, then close the connection."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._jobs.put(_STOP)
        await asyncio.get_running_loop().run_in_executor(None, thread.join)

    def _connect(self) -> sqlite3.Connection:
        try:
            return self._open_connection()
        except sqlite3.DatabaseError as exc:  # not a database, or a damaged one (a truncated file, bad pages)
            if self.path is None:
                raise
            aside = self._set_aside(exc)
        log.info("started a fresh session store at %s (the damaged one is at %s)", self.path, aside)
        return self._open_connection()

    def _set_aside(self, exc: sqlite3.DatabaseError) -> Path:
        """Move a damaged database (and its WAL) out of the way, keeping it for whoever wants to recover it."""
        assert self.path is not None
        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        log.error("session store %s is damaged (%s): moved to %s, sessions in it are not served", self.path, exc, aside)
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                source.replace(f"{aside}{suffix}")
        return aside

    def _open_connection(self) -> sqlite3.Connection:
        if self.path is not None:
            # Conversations are private: the state dir and the database are the user's alone.
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.path.touch(mode=0o600, exist_ok=True)
        # isolation_level=None: transactions are begun and committed here, explicitly, per batch.
        conn = sqlite3.connect(
            ":memory:" if self.path is None else str(self.path), isolation_level=None, check_same_thread=True
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            # A file that is not a database fails above; damaged pages only show when read.
            if (check := conn.execute("PRAGMA quick_check").fetchone()[0]) != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {check}")
        except BaseException:
            conn.close()
            raise
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=5000")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > _SCHEMA_VERSION:
            raise RuntimeError(f"{self.path} was written by a newer olol (schema {version}); upgrade olol")
        if version == 1:  # sessions from before owners: keyless, visible to admin keys (and with keys off)
            conn.execute("ALTER TABLE sessions ADD COLUMN owner TEXT NOT NULL DEFAULT ''")
        conn.executescript(_SCHEMA)
        conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        return conn

    # ------------------------------------------------------------------ the db thread
    def _run(self, ready: Future[None]) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:
            ready.set_exception(exc)
            return
        ready.set_result(None)
        try:
            stopping = False
            while not stopping:
                batch: list[Job] = []
                item = self._jobs.get()
                while True:
                    if item is _STOP:
                        stopping = True
                    else:
                        batch.append(item)  # type: ignore[arg-type]
                    if len(batch) >= _MAX_BATCH:
                        break
                    try:
                        item = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    self._run_batch(conn, batch)
        finally:
            conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[Job]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for fn, _future in batch:
                conn.execute("SAVEPOINT job")
                try:
                    outcomes.append((True, fn(conn)))
                except Exception as exc:
                    conn.execute("ROLLBACK TO job")
                    outcomes.append((False, exc))
                conn.execute("RELEASE job")
            conn.execute("COMMIT")
            self.commits += 1
        except Exception as exc:  # the commit itself failed (disk full, I/O error): nobody's work is durable
            log.exception("session store transaction failed")
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            outcomes = [(False, exc)] * len(batch)
        for (_fn, future), (ok, value) in zip(batch, outcomes, strict=True):
            if future.set_running_or_notify_cancel():
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._thread is None:
            raise RuntimeError("session store is not open")
        future: Future[T] = Future()
        self._jobs.put((fn, future))
        return await asyncio.wrap_future(future)

    # ------------------------------------------------------------------ SessionStore
    async def create(self, session: Session) -> None:
        messages = list(session.history)

        def create(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT INTO sessions ({_SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    session.id,
                    session.model,
                    _dumps(session.options),
                    None if session.keep_alive is None else _dumps(session.keep_alive),
                    session.created_at,
                    session.updated_at,
                    session.host,
                    len(messages),
                    sum(m.tokens for m in messages),
                    session.owner,
                ),
            )
            _insert_messages(conn, session.id, 0, messages)

        await self._call(create)

    async def get(self, session_id: str) -> Session | None:
        def get(conn: sqlite3.Connection) -> Session | None:
            row = conn.execute(f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,)).fetchone()
            if row is None:
                return None
            session = _session_row(row)
            rows = conn.execute(
                "SELECT role, content, extra, created_at, tokens, tokens_estimated, duration"
                " FROM messages WHERE session_id = ? ORDER BY seq",
                (session_id,),
            ).fetchall()
            session.history = ChatHistory([_message_row(r) for r in rows])
            return session

        return await self._call(get)

    async def list(self, model: str | None = None) -> list[Session]:
        def list_(conn: sqlite3.Connection) -> list[Session]:
            where, args = ("WHERE model = ?", (model,)) if model else ("", ())
            rows = conn.execute(f"SELECT {_SESSION_COLUMNS} FROM sessions {where} ORDER BY updated_at DESC", args)
            return [_session_row(r) for r in rows]

        return await self._call(list_)

    async def delete(self, session_id: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,)).rowcount > 0

        return await self._call(delete)

    async def append_turn(
        self, session_id: str, messages: Sequence[HistoryMessage], host: str, updated_at: int
    ) -> bool:
        turn = list(messages)

        def append(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT message_count FROM sessions WHERE id = ?", (session_id,)).fetchone()
            if row is None:
                return False
            _insert_messages(conn, session_id, row[0], turn)
            conn.execute(
                "UPDATE sessions SET message_count = message_count + ?, tokens = tokens + ?, host = ?,"
                " updated_at = ? WHERE id = ?",
                (len(turn), sum(m.tokens for m in turn), host, updated_at, session_id),
            )
            return True

        return await self._call(append)

    async def expire(self, idle_before: int) -> int:
        def expire(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM sessions WHERE updated_at < ?", (idle_before,)).rowcount

        return await self._call(expire)
