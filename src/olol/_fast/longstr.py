"""Long string literals of a JSON document: found, then decoded apart from the rest.

Facade over the compiled `longstr_c` or the pure-Python twin `_longstr_py`
(picked by `olol._fast.load`); see `_longstr_py` for the design.

    spans = find_long(data, 64 << 10)    # [(start, end)] of each long literal's contents, or None
    texts = decode(data, spans, release=True)  # their text, or None: decode the whole the usual way
    has_long(body, 64 << 10)             # whether a decoded body holds a string that long
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from olol._fast import load

__all__ = ["IMPLEMENTATION", "decode", "find_long", "has_long"]

if TYPE_CHECKING:
    from olol._fast._longstr_py import decode, find_long, has_long
else:
    _impl = load("longstr")
    decode, find_long, has_long = _impl.decode, _impl.find_long, _impl.has_long

# Module name of the implementation in use ("olol._fast.longstr_c" or "olol._fast._longstr_py").
IMPLEMENTATION: str = load("longstr").__name__
