"""Serving gRPC securely: the token interceptor and a TLS-or-plaintext bind, for any OLOL server."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from olol.security.grpc_auth import CallGuard
from olol.security.settings import SecuritySettings
from olol.security.tokens import warn_if_open

__all__ = ["bind_grpc", "grpc_interceptors"]

log = logging.getLogger("olol.security")


def grpc_interceptors(
    security: SecuritySettings, *, aio: bool, addresses: Callable[[], Sequence[str]] | None = None
) -> list[Any]:
    """Interceptors that refuse calls without the cluster token (none when auth is off)."""
    return CallGuard(security.token, addresses).interceptors(aio=aio)


def bind_grpc(server: Any, host: str, port: int, security: SecuritySettings, what: str = "agent") -> int:
    """Bind with TLS when configured, plaintext otherwise; returns the port (OSError if it could not bind)."""
    address = f"{host}:{port}"
    credentials = security.tls.server_credentials()
    bound = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"cannot bind {address}")
    warn_if_open(log, host, bound, security.token, what)
    if credentials is not None:
        mutual = " with client certificates required" if security.tls.ca else ""
        log.info("%s serves gRPC over TLS%s", what, mutual)
    return int(bound)
