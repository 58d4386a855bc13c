"""JSON objects that remember the bytes they were read from, so a proxy can pass them on unchanged.

A proxy in front of an Ollama host decodes every NDJSON line it relays (routing and metrics read
`done`, the final stats, errors) but usually has nothing to change in it. Encoding the object again
only to send what came in costs about as much as decoding it; keeping the line's own bytes next to
the object lets the writer send those instead.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ["JsonBody", "RawChunk", "raw_bytes"]


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
    are sent, so a long stream does not keep a large body twice.
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


def raw_bytes(obj: object) -> bytes | None:
    """The bytes `obj` was read from, when it is a `RawChunk` that nobody changed since; a `JsonBody`'s encoding."""
    if type(obj) is RawChunk:
        return obj.raw
    if type(obj) is JsonBody:
        return obj.encoded()
    return None
