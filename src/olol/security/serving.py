"""Serving gRPC securely: the token interceptor and a TLS-or-plaintext bind, for any OLOL server.

Two kinds of port: cluster ports (agents, rpc-servers) take only the cluster
token and, with a CA, only peers holding a cluster certificate; client ports
(the proxy's sessions service) are guarded like the proxy's HTTP API: its API
keys or the cluster token, TLS when it serves HTTPS, client certificates only
with `--https-client-auth`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from olol.security.grpc_auth import CallGuard, ClientGuard
from olol.security.settings import SecuritySettings
from olol.security.tokens import warn_if_open

__all__ = ["bind_grpc", "client_grpc_interceptors", "grpc_interceptors"]

log = logging.getLogger("olol.security")


def grpc_interceptors(
    security: SecuritySettings, *, aio: bool, addresses: Callable[[], Sequence[str]] | None = None
) -> list[Any]:
    """Interceptors that refuse calls without the cluster token (none when auth is off)."""
    return CallGuard(security.token, addresses).interceptors(aio=aio)


def client_grpc_interceptors(security: SecuritySettings, *, aio: bool) -> list[Any]:
    """For a client port: a full API key or the cluster token (none when neither is set)."""
    return ClientGuard(security.token, security.api_keys).interceptors(aio=aio)


def _client_credentials(security: SecuritySettings) -> Any:
    if not (security.https and security.tls.has_identity):
        return None
    return security.tls.server_credentials(require_client_cert=security.https_client_auth)


def bind_grpc(
    server: Any, host: str, port: int, security: SecuritySettings, what: str = "agent", *, clients: bool = False
) -> int:
    """Bind with TLS when configured, plaintext otherwise; returns the port (OSError if it could not bind).

    `clients=True` binds a client port (see the module's docstring).
    """
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    credentials = _client_credentials(security) if clients else security.tls.server_credentials()
    bound = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"cannot bind {address}")
    if not (clients and security.api_keys.enabled):
        warn_if_open(log, host, bound, security.token, what)
    if credentials is not None:
        mutual = security.https_client_auth if clients else bool(security.tls.ca)
        log.info("%s serves gRPC over TLS%s", what, " with client certificates required" if mutual else "")
    return int(bound)
