"""The cluster token: every gRPC call between OLOL processes carries it.

Sent as `authorization: Bearer <token>` metadata and compared in constant time,
so a stranger learns nothing from how fast it is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from olol.errors import OlolError

if TYPE_CHECKING:
    import logging

__all__ = [
    "TOKEN_ENV",
    "TOKEN_KEY",
    "Unauthorized",
    "check_token",
    "is_loopback",
    "load_token",
    "token_matches",
    "token_metadata",
    "warn_if_open",
]

TOKEN_KEY = "authorization"
TOKEN_ENV = "OLOL_TOKEN"
TOKEN_FILE_ENV = "OLOL_TOKEN_FILE"


class Unauthorized(OlolError):
    status = 401
    #: Extra trailing metadata for the refusal (a scan proof, see olol.security.grpc_auth).
    metadata: tuple[tuple[str, str], ...] = ()


def load_token(flag: str | None = None, file: str | Path | None = None) -> str | None:
    """Flag, else $OLOL_TOKEN, else a file (flag or $OLOL_TOKEN_FILE); None means auth is off."""
    if flag:
        return flag
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    path = file or os.environ.get(TOKEN_FILE_ENV)
    if path:
        text = Path(path).expanduser().read_text().strip()
        if not text:
            raise ValueError(f"token file {path} is empty")
        return text
    return None


def token_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return ((TOKEN_KEY, f"Bearer {token}"),) if token else ()


def check_token(metadata: Iterable[Any] | None, expected: str | None) -> None:
    """Raise Unauthorized unless the call's metadata carries the expected token (if one is set)."""
    if not expected:
        return
    presented = ""
    for key, value in metadata or ():
        if key == TOKEN_KEY:
            presented = value.decode() if isinstance(value, bytes) else str(value)
    if not presented:
        raise Unauthorized("missing cluster token")
    if not token_matches(presented, expected):
        raise Unauthorized("invalid cluster token")


def token_matches(presented: str, expected: str) -> bool:
    """Whether an `authorization` value is `Bearer <expected>`, in constant time."""
    # Digests have one length, so not even the token's length shows in the timing.
    return hmac.compare_digest(_digest(presented), _digest(f"Bearer {expected}"))


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps a service on this machine (wildcards and LAN addresses do not)."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def warn_if_open(log: logging.Logger, host: str, port: int, token: str | None, what: str) -> None:
    """Auth off is the default (a trusted LAN), but it must never be silent beyond loopback."""
    if not token and not is_loopback(host):
        log.warning(
            "no cluster token: anyone who can reach %s:%d can use this %s (set --token or $OLOL_TOKEN)",
            host,
            port,
            what,
        )
