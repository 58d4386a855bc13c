"""Which conversation a request belongs to, and the text a host's KV cache would hold for it.

An explicit `X-OLOL-Session` header wins. Otherwise a chat is identified by its
prefix, system prompt plus first user message, which is exactly the part of
the prompt a host's KV cache can reuse on the next turn. A request with neither
has no key and is routed on load alone. Under the cache-aware policy the
conversation prefix is a special case of the prompt's routing text
(`prefix_text`), which the next turn extends: only the header makes a key
(`conversations=False`), except for a chat's first short turns, whose text
(under `SHORT_PROMPT`) the prefix index is too coarse to follow.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from olol.cluster import normalize

__all__ = ["SESSION_HEADER", "SHORT_PROMPT", "prefix_text", "session_key"]

SESSION_HEADER = "X-OLOL-Session"
#: Routing texts shorter than this (bytes) keep the conversation key under a prefix-aware policy: the
#: prefix index follows 64-byte blocks and only matches of 256 bytes or more (`cache_aware.MIN_MATCH`),
#: so a chat's first short turns would otherwise go wherever load sends them.
SHORT_PROMPT = 1024


def _content(message: Any) -> Any:
    return message.get("content") if isinstance(message, dict) else None


def _printable(header: str) -> str:
    # aiohttp keeps a header's non-UTF-8 bytes as lone surrogates, which no encoder (the hash ring's,
    # a log's) takes: spell them as escapes, so every distinct header still keys its own conversation.
    return header.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def session_key(header: str | None, body: dict[str, Any], *, conversations: bool = True) -> str | None:
    if header and header.strip():
        return "h:" + _printable(header.strip())
    if not conversations:
        return None
    messages = body.get("messages")
    if not isinstance(messages, list):
        return None
    system = next((_content(m) for m in messages if isinstance(m, dict) and m.get("role") == "system"), None)
    user = next((_content(m) for m in messages if isinstance(m, dict) and m.get("role") == "user"), None)
    if user is None:
        return None
    # The model is part of the key: the same opening line to another model is another cache.
    digest = hashlib.blake2b(digest_size=12)
    _hash_json(digest, [normalize(str(body.get("model", ""))), system, user])
    return "c:" + digest.hexdigest()


#: Strings longer than this are hashed in slices of it (see `_hash_json`).
_SLICE = 1 << 16


def _hash_json(digest: Any, items: list[Any]) -> None:
    """Feed `json.dumps(items, sort_keys=True, default=str)` to `digest` without building it whole.

    The key hashes a conversation's opening messages, which may be megabytes: their JSON text (and
    its bytes) would be two more copies of them. A string's JSON escapes are per character, so
    its slices' escapes, joined, are its own.
    """
    digest.update(b"[")
    for n, item in enumerate(items):
        if n:
            digest.update(b", ")
        if isinstance(item, str) and len(item) > _SLICE:
            digest.update(b'"')
            for start in range(0, len(item), _SLICE):
                digest.update(json.dumps(item[start : start + _SLICE])[1:-1].encode())
            digest.update(b'"')
        else:
            digest.update(json.dumps(item, sort_keys=True, default=str).encode())
    digest.update(b"]")


# Separators that cannot occur in normal text, so a message boundary never looks like content.
_ROLE, _END = "\x1f", "\x1e"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


# Characters of a prompt its routing text keeps: far past any host's prefix index budget (context x
# slots), and a pasted document of megabytes is not copied whole (twice: text, then bytes) to route it.
MAX_PREFIX_CHARS = 256 << 10


def prefix_text(body: dict[str, Any]) -> bytes | None:
    """The prompt as a host's cache sees it, in order: tools, then each message (or system + prompt),
    its first `MAX_PREFIX_CHARS` characters.

    A chat's next turn appends messages, so its text extends this one; `/api/generate` is laid
    out as a system and a user message, so the same words reach the same cache either way.
    """
    messages = body.get("messages")
    if isinstance(messages, list):
        turns = [(str(m.get("role", "")), m.get("content") or "") for m in messages if isinstance(m, dict)]
    elif isinstance(body.get("prompt"), str) and body["prompt"]:
        turns = [("system", body["system"])] if isinstance(body.get("system"), str) and body["system"] else []
        turns.append(("user", body["prompt"]))
    else:
        return None
    if not turns:
        return None
    parts = [_text(body["tools"]) + _END] if body.get("tools") else []
    left = MAX_PREFIX_CHARS - len(parts[0]) if parts else MAX_PREFIX_CHARS
    for role, content in turns:
        if left <= 0:
            break
        # Sliced before it is formatted: only what is kept is copied.
        part = f"{role}{_ROLE}{_text(content)[:left] if isinstance(content, str) else _text(content)}{_END}"
        parts.append(part[:left])
        left -= len(parts[-1])
    text = "".join(parts)
    return text.encode("utf-8", "surrogatepass")  # JSON may carry lone surrogates ("\ud800"): keep them, do not fail
