"""Long string literals in a JSON document: where they are, and their text.

Pure-Python twin of `longstr_c.pyx` (same API and results; only the memory they
need differs); import the facade `olol._fast.longstr` rather than this module.

Why: a large request body is nearly always a small frame around one or a few
long strings (a document pasted into a message, an image in base64). Parsing it
whole holds its bytes and its decoded text (or objects) at once, twice its size.
Taking the long literals out lets a caller parse the small frame as usual and
decode each long literal on its own, which the compiled version does while
giving the bytes it has consumed back to the system (`release=True`): the bytes
and the text are then never both resident.

`has_long` answers the same question of a decoded document (nested dicts and
lists), so a writer can tell cheaply whether a body is worth encoding in pieces.

Only what the standard library's `json` would decode to the same string is
decoded here; anything else (a bad escape, a raw control character, invalid
UTF-8, a lone surrogate) makes `decode` answer None, so the caller decodes the
whole document the usual way and words the error as it always did.
"""

from __future__ import annotations

import json
import mmap
import re
from collections.abc import Sequence

__all__ = ["decode", "find_long", "has_long"]

Buffer = bytes | bytearray | mmap.mmap

# JSON's whitespace: what may sit between an object key's closing quote and its colon.
_SPACE = b" \t\r\n"
_CONTROL = re.compile(r"[\x00-\x1f]")  # refused raw inside a string (json's strict mode, Go's decoder)
_SURROGATE = re.compile("[\ud800-\udfff]")  # a lone one: what `\ud800` decodes to, unpaired


def _closing_quote(data: Buffer, pos: int) -> int:
    """Index of the quote that ends the string whose contents start at `pos`; -1 when none does."""
    while True:
        end = data.find(b'"', pos)
        if end < 0:
            return -1
        slashes = 0
        while end - slashes - 1 >= pos and data[end - slashes - 1] == 0x5C:  # backslash
            slashes += 1
        if slashes % 2 == 0:
            return end
        pos = end + 1


def find_long(data: Buffer, threshold: int) -> list[tuple[int, int]] | None:
    """(start, end) of the contents (quotes excluded) of every string literal at least `threshold` bytes long.

    None when the document cannot be split that way: a literal never ends (the document is cut short),
    or a long literal is an object key (only values are taken out). Outside strings nothing is checked:
    the caller parses what is left, which refuses whatever is malformed there.
    """
    spans: list[tuple[int, int]] = []
    size = len(data)
    pos = 0
    while True:
        start = data.find(b'"', pos)
        if start < 0:
            return spans
        end = _closing_quote(data, start + 1)
        if end < 0:
            return None
        pos = end + 1
        if end - start - 1 >= threshold:
            after = pos
            while after < size and data[after] in _SPACE:
                after += 1
            if after < size and data[after] == 0x3A:  # ':' follows: a key
                return None
            spans.append((start + 1, end))


def decode(data: Buffer, spans: Sequence[tuple[int, int]], release: bool = False) -> list[str] | None:
    """The text of each span `find_long` returned, as `json.loads` decodes it; None if any is not valid.

    On None the data is untouched. `release` is for a private anonymous `mmap` the caller discards
    afterwards: the compiled version then gives each literal's pages back as it decodes them (this
    twin decodes each literal whole and ignores it).
    """
    texts: list[str] = []
    with memoryview(data) as view:
        for start, end in spans:
            try:
                raw = str(view[start:end], "utf-8")  # strict: refuses UTF-8-encoded surrogates too
            except UnicodeDecodeError:
                return None
            if data.find(b"\\", start, end) < 0:
                if _CONTROL.search(raw):
                    return None
                texts.append(raw)
                continue
            try:
                text, stop = json.decoder.scanstring(raw + '"', 0, True)  # type: ignore[attr-defined]
            except json.JSONDecodeError:
                return None
            if stop != len(raw) + 1 or _SURROGATE.search(text):
                return None
            texts.append(text)
    return texts


def has_long(value: object, threshold: int) -> bool:
    """Whether `value`, or a value in the dicts and lists it nests, is a string of `threshold` characters or more."""
    todo = [value]
    while todo:
        node = todo.pop()
        if isinstance(node, str):
            if len(node) >= threshold:
                return True
        elif isinstance(node, dict):
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    return False
