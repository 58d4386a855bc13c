"""Request bodies decoded the way Ollama's Go handlers decode them, with Go's error texts.

A field of the wrong JSON type is a 400 carrying the `json: cannot unmarshal ...`
text Go's decoder writes, because clients and the proxy show those texts verbatim.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tests.support.ollama_sim._errors import SimError
from tests.support.ollama_sim._wire import JSON

_GO_KINDS: dict[type, str] = {str: "string", bool: "bool", int: "number", float: "number", list: "array"}


def _field(body: JSON, key: str, expected: type | tuple[type, ...], where: str, go_type: str) -> Any:
    """A field as Go's decoder would accept it, else 400 with Go's unmarshal error."""
    value = body.get(key)
    if value is None:
        return None
    ok = isinstance(value, expected) and not (isinstance(value, bool) and bool not in _as_tuple(expected))
    if not ok:
        kind = _GO_KINDS.get(type(value), "object")
        raise SimError(400, f"json: cannot unmarshal {kind} into Go struct field {where}.{key} of type {go_type}")
    return value


def _as_tuple(t: type | tuple[type, ...]) -> tuple[type, ...]:
    return t if isinstance(t, tuple) else (t,)


def _stream_flag(body: JSON, where: str) -> bool:
    value = _field(body, "stream", bool, where, "bool")
    return True if value is None else bool(value)


def _options(body: JSON, where: str) -> JSON:
    # Ollama's Options.FromMap skips nil values: clients send every option they know, unset ones as null.
    options = _field(body, "options", dict, where, "map[string]interface {}") or {}
    return {k: v for k, v in options.items() if v is not None}


def _num_predict(options: JSON) -> int | None:
    value = options.get("num_predict")
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if value < 0 else int(value)


def _stops(options: JSON) -> list[str]:
    stop = options.get("stop")
    if isinstance(stop, str):
        return [stop]
    return [s for s in stop if isinstance(s, str) and s] if isinstance(stop, list) else []


def _think_on(value: Any) -> bool:
    # `think` is a bool, or a level ("low"/"medium"/"high") for models that take one.
    return value is True or (isinstance(value, str) and value in ("low", "medium", "high"))


def _decode_body(raw: bytes, where: str) -> JSON:
    """A JSON object body, else 400 with what Go's decoder says about `api.<where>`."""
    if not raw.strip():
        raise SimError(400, "missing request body")
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        doc, pos = getattr(e, "doc", ""), getattr(e, "pos", 0)
        if pos >= len(doc.rstrip()):
            raise SimError(400, "unexpected EOF") from None
        raise SimError(400, f"invalid character {doc[pos]!r} looking for beginning of value") from None
    if not isinstance(body, dict):
        kind = _GO_KINDS.get(type(body), "object")
        raise SimError(400, f"json: cannot unmarshal {kind} into Go value of type api.{where}")
    return body


@dataclass
class RecordedRequest:
    method: str
    path: str
    body: JSON
