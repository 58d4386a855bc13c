"""A large JSON body decoded without its bytes and its text (or its objects) ever all resident at once.

The gate reads a large body into an anonymous mmap (`olol.security.http`). Decoded whole, the
body would cost twice its size at the peak: its bytes and its text, then its text and the objects.
But a large body is nearly always a small frame around a few long strings (a pasted document, an
image in base64), so the long string literals are taken out (`olol._fast.longstr`), the frame
that is left (each long literal replaced by a placeholder) is decoded the usual way, and each long
literal is then decoded on its own into its final string while the pages it came from are given
back: the body costs about its size once.

Whatever does not fit that shape (no long literal, a frame too big to be worth it, a long literal
that is a key or is not valid JSON text, a frame that does not decode) is decoded whole by the
caller's usual decoder, from the untouched bytes, so its result and its error words are exactly
those of a small body.
"""

from __future__ import annotations

import mmap
import secrets
from collections.abc import Callable
from typing import Any

from olol._fast.longstr import decode, find_long
from olol.security.http import InvalidBody

__all__ = ["LONG_LITERAL", "loads_large"]

#: String literals this long (in bytes) are decoded apart from the frame around them.
LONG_LITERAL = 64 << 10
# The frame is decoded the usual way (bytes, text and objects at once): taking the literals out pays
# only when they are most of the body.
_FRAME_SHARE = 4
# Unguessable by a client, so a placeholder cannot stand for anything the client sent (counted anyway).
_TOKEN = secrets.token_hex(16)


def _placeholder(i: int) -> str:
    return f"olol-long-literal-{_TOKEN}-{i}"


def loads_large(raw: mmap.mmap, loads: Callable[[bytes | mmap.mmap], Any]) -> Any:
    """`loads(raw)`'s result (or error), with `raw`'s long string literals decoded apart from the rest.

    `raw` is consumed: its pages may be given back, and the caller closes it.
    """
    spans = find_long(raw, LONG_LITERAL)
    if not spans or len(raw) - sum(end - start for start, end in spans) > len(raw) // _FRAME_SHARE:
        return loads(raw)
    parts: list[bytes] = []
    pos = 0
    for i, (start, end) in enumerate(spans):
        parts += (raw[pos:start], _placeholder(i).encode())
        pos = end
    parts.append(raw[pos:])
    try:
        frame = loads(b"".join(parts))
    except InvalidBody:
        return loads(raw)  # worded from the whole body, as always
    del parts
    holes = _holes(frame, len(spans))
    if holes is None:
        return loads(raw)
    texts = decode(raw, spans, release=True)
    if texts is None:
        return loads(raw)  # an invalid long literal: the whole body's decoding words the error
    for (container, key), text in zip(holes, texts, strict=True):
        container[key] = text
    return frame


def _holes(frame: Any, count: int) -> list[tuple[Any, Any]] | None:
    """Where each placeholder sits, in order: (its dict or list, its key or index).

    None unless each placeholder is found exactly once, as a value: a literal that was a key, or a
    client's string that happens to equal a placeholder, sends the body down the usual path.
    """
    if not isinstance(frame, dict | list):
        return None  # the whole body was one long literal: nothing to save
    wanted = {_placeholder(i): i for i in range(count)}
    found: dict[int, tuple[Any, Any]] = {}
    todo = [frame]
    while todo:
        node = todo.pop()
        items: Any = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            if isinstance(key, str) and key in wanted:
                return None
            if isinstance(value, str):
                i = wanted.get(value)
                if i is not None:
                    if i in found:
                        return None
                    found[i] = (node, key)
            elif isinstance(value, dict | list):
                todo.append(value)
    return [found[i] for i in range(count)] if len(found) == count else None
