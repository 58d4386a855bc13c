"""The cluster token: every gRPC call between OLOL processes carries it.

Sent as `authorization: Bearer <token>` metadata and compared in constant time,
so a stranger learns nothing from how fast it is refused.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from olol.errors import OlolError

__all__ = ["TOKEN_ENV", "TOKEN_KEY", "Unauthorized", "check_token", "load_token", "token_metadata"]

TOKEN_KEY = "authorization"
TOKEN_ENV = "OLOL_TOKEN"
TOKEN_FILE_ENV = "OLOL_TOKEN_FILE"


class Unauthorized(OlolError):
    status = 401


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
    if not hmac.compare_digest(presented.encode(), f"Bearer {expected}".encode()):
        raise Unauthorized("invalid cluster token")
