"""`SessionService`: the session feature as one part of a running proxy (store, manager, gRPC server).

`ProxyContext` builds it from the config and starts/stops it with the
proxy; handlers reach the manager as `ctx.sessions.manager`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from olol.sessions.grpc import SessionsGrpcServer
from olol.sessions.manager import SessionManager
from olol.sessions.ports import ChatGateway
from olol.sessions.sqlite import DB_NAME, SqliteSessionStore

if TYPE_CHECKING:
    from olol.security.settings import SecuritySettings

__all__ = ["SessionService", "default_state_dir"]


def default_state_dir() -> Path:
    """`$XDG_STATE_HOME/olol`, else `~/.local/state/olol` (the XDG base directory rule)."""
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "state"
    return base / "olol"


class SessionService:
    def __init__(self, manager: SessionManager, grpc_server: SessionsGrpcServer | None = None) -> None:
        self.manager = manager
        self.grpc = grpc_server

    @classmethod
    def build(
        cls,
        gateway: ChatGateway,
        *,
        state_dir: str | Path | None,
        ttl: float | None,
        grpc_host: str = "127.0.0.1",
        grpc_port: int | None = None,
        security: SecuritySettings | None = None,
    ) -> SessionService:
        """`state_dir=None` keeps sessions in memory (embedding, tests); the CLI always gives one.

        With `security`, the gRPC service uses the proxy's TLS certificate (when it
        serves HTTPS) and requires one of its API keys or the cluster token (when set).
        """
        store = SqliteSessionStore(Path(state_dir).expanduser() / DB_NAME if state_dir is not None else None)
        manager = SessionManager(store, gateway, ttl=ttl)
        server = SessionsGrpcServer(manager, grpc_host, grpc_port, security=security) if grpc_port is not None else None
        return cls(manager, server)

    @property
    def grpc_port(self) -> int | None:
        return self.grpc.port if self.grpc is not None else None

    async def start(self) -> None:
        await self.manager.start()
        if self.grpc is not None:
            try:
                await self.grpc.start()
            except BaseException:
                await self.manager.stop()
                raise

    async def stop(self) -> None:
        """gRPC first (in-flight turns finish within its grace), then the store is flushed and closed."""
        try:
            if self.grpc is not None:
                await self.grpc.stop()
        finally:
            await self.manager.stop()
