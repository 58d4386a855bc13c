"""Which conversation a request belongs to.

An explicit `X-OLOL-Session` header wins. Otherwise a chat is identified by its
prefix, system prompt plus first user message, which is exactly the part of
the prompt a host's KV cache can reuse on the next turn. A request with neither
has no key and is routed on load alone.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from olol.cluster import normalize

__all__ = ["SESSION_HEADER", "session_key"]

SESSION_HEADER = "X-OLOL-Session"


def _content(message: Any) -> Any:
    return message.get("content") if isinstance(message, dict) else None


def _printable(header: str) -> str:
    # aiohttp keeps a header's non-UTF-8 bytes as lone surrogates, which no encoder (the hash ring's,
    # a log's) takes: spell them as escapes, so every distinct header still keys its own conversation.
    return header.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def session_key(header: str | None, body: dict[str, Any]) -> str | None:
    if header and header.strip():
        return "h:" + _printable(header.strip())
    messages = body.get("messages")
    if not isinstance(messages, list):
        return None
    system = next((_content(m) for m in messages if isinstance(m, dict) and m.get("role") == "system"), None)
    user = next((_content(m) for m in messages if isinstance(m, dict) and m.get("role") == "user"), None)
    if user is None:
        return None
    # The model is part of the key: the same opening line to another model is another cache.
    prefix = json.dumps([normalize(str(body.get("model", ""))), system, user], sort_keys=True, default=str)
    return "c:" + hashlib.blake2b(prefix.encode(), digest_size=12).hexdigest()
