"""Scalar conversions Ollama's JSON needs: durations, timestamps, base64 images, Structs."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format, struct_pb2

from olol.errors import BadRequest

__all__ = [
    "b64decode",
    "b64encode",
    "dict_to_struct",
    "duration_from_json",
    "duration_to_json",
    "rfc3339_from_ns",
    "rfc3339_to_ns",
    "struct_to_dict",
]

_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
FOREVER = -1
INT64_MAX = 2**63 - 1


def duration_from_json(value: Any) -> int:
    """Ollama's `keep_alive`: a number of seconds or a Go duration string ("5m", "1h30m").

    Negative means "keep loaded forever", as in Ollama; we keep it as -1 ns. A duration past
    int64 nanoseconds is refused, as Go's ParseDuration refuses it (a host could not be told it).
    """
    ns = _duration_ns(value)
    if ns > INT64_MAX:
        raise BadRequest(f'time: invalid duration "{value}"')
    return ns


def _duration_ns(value: Any) -> int:
    if isinstance(value, bool):
        raise BadRequest(f"invalid duration: {value!r}")
    if isinstance(value, int | float):
        return FOREVER if value < 0 else _finite_ns(value * 10**9, value)
    if isinstance(value, str):
        text = value.strip()
        sign = -1 if text.startswith("-") else 1
        text = text.lstrip("+-")
        try:
            seconds = float(text)  # "300" means seconds too
        except ValueError:
            pass
        else:
            if seconds == seconds:  # "nan" is no duration; "inf" is refused by `_finite_ns`
                return FOREVER if sign < 0 else _finite_ns(seconds * 10**9, value)
        pos, total = 0, 0.0
        for match in _PART.finditer(text):
            if match.start() != pos:
                break
            total += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if text and pos == len(text):
            return FOREVER if sign < 0 else _finite_ns(total, value)
    raise BadRequest(f'time: invalid duration "{value}"')


def _finite_ns(ns: float, value: Any) -> int:
    if ns != ns or ns == float("inf"):
        raise BadRequest(f'time: invalid duration "{value}"')
    return int(ns)


def duration_to_json(ns: int) -> int | float:
    """Back to Ollama's JSON form: seconds (a number), -1 for forever."""
    if ns < 0:
        return -1
    return ns // 10**9 if ns % 10**9 == 0 else ns / 10**9


def rfc3339_from_ns(ns: int) -> str:
    """Go's time.RFC3339Nano in UTC, as Ollama writes `created_at`."""
    if ns <= 0:
        return "0001-01-01T00:00:00Z"
    secs, frac = divmod(ns, 10**9)
    stamp = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{frac:09d}".rstrip("0").rstrip(".") + "Z"


def rfc3339_to_ns(text: str | None) -> int:
    if not text:
        return 0
    match = re.match(r"^(.*?)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", text)
    if not match:
        raise BadRequest(f"invalid timestamp {text!r}")
    head, frac, zone = match.groups()
    dt = datetime.fromisoformat(head + ("+00:00" if zone == "Z" else zone))
    if dt.year <= 1:
        return 0
    ns = int(dt.timestamp()) * 10**9 + int((frac or "0")[:9].ljust(9, "0"))
    # "Forever" (keep_alive -1) shows as a far-future date, past what int64 ns can hold.
    return min(ns, INT64_MAX)


def b64decode(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise BadRequest(f"illegal base64 data in image: {exc}") from exc


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode()


def dict_to_struct(value: dict[str, Any]) -> struct_pb2.Struct:
    if not isinstance(value, dict):
        raise BadRequest(f"expected a JSON object, got {type(value).__name__}")
    out = struct_pb2.Struct()
    out.update(value)
    return out


def _unfloat(value: Any) -> Any:
    # Struct stores every number as a double; give integers back their JSON form.
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _unfloat(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unfloat(v) for v in value]
    return value


def struct_to_dict(value: struct_pb2.Struct) -> dict[str, Any]:
    result: dict[str, Any] = _unfloat(json_format.MessageToDict(value))
    return result
