"""Chat sessions the cluster remembers: history, context-window trimming, durable storage.

Public API:
* `Session`, `ChatHistory`, `HistoryMessage`: the domain (plain data);
* `SessionManager`: create/get/list/delete and `open_turn` (a streamed chat turn that records itself);
* `SqliteSessionStore`: the durable store (WAL, its own thread, group commit);
* `DropOldestTurns`: the trimming policy; `SessionService`: the feature wired into a proxy.

The HTTP API is `olol.proxy.http.sessions`, the gRPC API `olol.sessions.grpc`;
docs/sessions.md describes both.
"""

from olol.sessions.manager import SessionManager
from olol.sessions.model import ChatHistory, HistoryMessage, Session, SessionNotFound
from olol.sessions.service import SessionService, default_state_dir
from olol.sessions.sqlite import SqliteSessionStore
from olol.sessions.trim import DropOldestTurns, Window

__all__ = [
    "ChatHistory",
    "DropOldestTurns",
    "HistoryMessage",
    "Session",
    "SessionManager",
    "SessionNotFound",
    "SessionService",
    "SqliteSessionStore",
    "Window",
    "default_state_dir",
]
