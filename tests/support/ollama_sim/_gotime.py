"""Go's time formats: RFC3339Nano timestamps out, durations (`keep_alive`) in."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

from tests.support.ollama_sim._errors import SimError

NS = 1_000_000_000
_FOREVER_NS = 2**63 - 1  # Go's max time.Duration: what a negative keep_alive becomes
_DURATION_UNITS = {"ns": 1, "us": 1e3, "µs": 1e3, "μs": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9}


def _rfc3339(ns: int) -> str:
    """Go's RFC3339Nano: nanoseconds with trailing zeros trimmed."""
    sec, frac = divmod(ns, NS)
    out = datetime.fromtimestamp(sec, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        out += "." + f"{frac:09d}".rstrip("0")
    return out + "Z"


def _now() -> str:
    return _rfc3339(time.time_ns())


def parse_keep_alive(value: Any) -> int | None:
    """Nanoseconds, or None for forever; numbers are seconds and strings Go durations, as
    Ollama's api.Duration decodes them (errors carry Go's texts)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SimError(400, f"Unsupported type: '{type(value).__name__}'")
    if not isinstance(value, str):
        return None if value < 0 else int(value * NS)
    text = value
    negative = text.startswith("-")
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return 0
    if not body:
        raise SimError(400, f'time: invalid duration "{text}"')
    total, pos = 0.0, 0
    while pos < len(body):
        num = re.match(r"\d+(?:\.\d*)?|\.\d+", body[pos:])
        if num is None:
            raise SimError(400, f'time: invalid duration "{text}"')
        pos += num.end()
        unit = re.match(r"[^\d.]*", body[pos:])
        unit_text = unit.group() if unit else ""
        if not unit_text:
            raise SimError(400, f'time: missing unit in duration "{text}"')
        if unit_text not in _DURATION_UNITS:
            raise SimError(400, f'time: unknown unit "{unit_text}" in duration "{text}"')
        pos += len(unit_text)
        total += float(num.group()) * _DURATION_UNITS[unit_text]
    if negative and total > 0:
        return None
    return int(total)
