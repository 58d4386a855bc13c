"""JSON objects that remember the bytes they were read from, so a proxy can pass them on unchanged.

A proxy in front of an Ollama host decodes every NDJSON line it relays (routing and metrics read
`done`, the final stats, errors) but usually has nothing to change in it. Encoding the object again
only to send what came in costs about as much as decoding it; keeping the line's own bytes next to
the object lets the writer send those instead.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import orjson

__all__ = ["LONG_STRING", "JsonBody", "Pieces", "RawChunk", "raw_bytes"]

#: Strings this long (in characters) are encoded a slice at a time when a body is written in pieces.
LONG_STRING = 64 << 10
# Characters per slice: a piece is at most 6 bytes a character (an escaped control character).
_SLICE = 1 << 20
# Stands for a long string in the frame encoded around it; unguessable, so no client's string is taken for one.
_TOKEN = secrets.token_hex(16)


class RawChunk(dict[str, Any]):
    """A decoded JSON object and `raw`, the exact bytes it was decoded from (without a line break).

    Changing the object drops `raw`: it no longer says the same thing, so writers encode the object
    again. Nested values are not watched; like every chunk a backend yields they are read, not
    changed in place (consumers build new objects, e.g. `{**chunk, ...}`, which are plain dicts).
    """

    __slots__ = ("raw",)

    raw: bytes | None

    @classmethod
    def parse(cls, line: bytes) -> RawChunk:
        """Decode one NDJSON line (an object; a `ValueError` otherwise)."""
        raw = line.rstrip()
        value = json.loads(raw)
        if not isinstance(value, dict):
            raise ValueError(f"expected a JSON object, got {type(value).__name__}")
        return cls.of(value, raw)

    @classmethod
    def of(cls, value: dict[str, Any], raw: bytes) -> RawChunk:
        """`value` (a copy of it), known to be what `raw` decodes to."""
        chunk = cls(value)
        chunk.raw = raw
        return chunk

    # Every way to change a dict in place drops the bytes.
    def __setitem__(self, key: str, value: Any) -> None:
        self.raw = None
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.raw = None
        super().__delitem__(key)

    def __ior__(self, other: Any) -> RawChunk:  # type: ignore[override,misc]
        self.raw = None
        super().__ior__(other)
        return self

    def clear(self) -> None:
        self.raw = None
        super().clear()

    def pop(self, key: str, *default: Any) -> Any:
        self.raw = None
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, Any]:
        self.raw = None
        return super().popitem()

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self.raw = None
        return super().setdefault(key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.raw = None
        super().update(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        return dict, (dict(self),)  # copied or pickled as the plain object it stands for


class JsonBody(RawChunk):
    """A request body for a host that is encoded only if a writer asks for its bytes (`raw_bytes`).

    A host that speaks JSON gets it encoded once, straight to bytes (no text in between, which a
    large body would otherwise cost twice over: `json.dumps(...).encode()`); a host that converts the
    object (an agent's protobuf) never pays for the encoding. `forget()` drops the bytes once they
    are sent, so a long stream does not keep a large body twice. A body with long strings is better
    sent as `Pieces`, never encoded whole (the Ollama adapter does so).
    """

    __slots__ = ()

    @classmethod
    def wrap(cls, value: dict[str, Any]) -> JsonBody:
        body = cls(value)
        body.raw = None
        return body

    def encoded(self) -> bytes | None:
        if self.raw is None:
            try:
                self.raw = orjson.dumps(self)
            except TypeError:  # what orjson cannot take (an integer past 64 bits): the writer's own encoder
                return None
        return self.raw

    def forget(self) -> None:
        self.raw = None


def _placeholder(i: int) -> str:
    return f"olol-long-string-{_TOKEN}-{i}"


def _hollow(value: Any, longs: list[str]) -> Any:
    """`value` with each long string appended to `longs` and replaced by its placeholder.

    Containers are copied only when something in them was replaced; otherwise `value` itself comes back.
    """
    if isinstance(value, str):
        if len(value) < LONG_STRING:
            return value
        longs.append(value)
        return _placeholder(len(longs) - 1)
    if isinstance(value, dict):
        before = len(longs)
        items = {key: _hollow(item, longs) for key, item in value.items()}
        return items if len(longs) > before else value
    if isinstance(value, list):
        before = len(longs)
        copied = [_hollow(item, longs) for item in value]
        return copied if len(longs) > before else value
    return value


class Pieces:
    """A JSON body as bytes to write one piece after another, and `length`, their exact total.

    The frame around the long strings is encoded once; each long string is encoded a slice at a
    time (JSON escapes each character on its own, so the slices' encodings joined are the string's),
    once to count the length (and to learn that every slice can be encoded, before a byte is sent)
    and again while it is written. Iterating again yields the same bytes (a retried request).
    """

    __slots__ = ("_frame", "_longs", "length")

    def __init__(self, frame: list[bytes], longs: list[str], length: int) -> None:
        self._frame = frame  # len(longs) + 1 pieces of the frame, between the long strings
        self._longs = longs
        self.length = length

    @classmethod
    def of(cls, body: Any) -> Pieces | None:
        """`body` as pieces; None when it holds no long string or orjson cannot encode it.

        A large body is nearly always a few long strings in a small frame; encoded whole, it would be
        held twice (the object and its bytes) while it is written. In pieces only a slice of a long
        string is encoded at a time. Walking the body costs more than encoding a small one: callers
        ask only when `olol._fast.longstr.has_long` says a long string is there.
        """
        longs: list[str] = []
        frame = _hollow(body, longs)
        if not longs:
            return None
        try:
            encoded = orjson.dumps(frame)
            parts: list[bytes] = []
            pos = 0
            for i in range(len(longs)):
                marker = f'"{_placeholder(i)}"'.encode()
                at = encoded.find(marker, pos)
                if at < 0:  # a placeholder in a key: cannot be, as `_hollow` leaves keys alone
                    return None
                parts.append(encoded[pos : at + 1])
                pos = at + len(marker) - 1
            parts.append(encoded[pos:])
            length = len(encoded) - sum(len(_placeholder(i)) for i in range(len(longs)))
            for text in longs:
                length += sum(len(piece) for piece in _slices(text))
        except TypeError:  # what orjson cannot take (a lone surrogate, an integer past 64 bits)
            return None
        return cls(parts, longs, length)

    def __iter__(self) -> Iterator[bytes]:
        yield self._frame[0]
        for text, after in zip(self._longs, self._frame[1:], strict=True):
            yield from _slices(text)
            yield after


def _slices(text: str) -> Iterator[bytes]:
    """`text`'s JSON encoding without its quotes, a slice of characters at a time."""
    for start in range(0, len(text), _SLICE):
        yield orjson.dumps(text[start : start + _SLICE])[1:-1]


def raw_bytes(obj: object) -> bytes | None:
    """The bytes `obj` was read from, when it is a `RawChunk` that nobody changed since; a `JsonBody`'s encoding."""
    if type(obj) is RawChunk:
        return obj.raw
    if type(obj) is JsonBody:
        return obj.encoded()
    return None
