"""Quantization levels in model names and which level can serve which.

Facade over the compiled `quant_c` or the pure-Python twin `_quant_py` (picked by
`olol._fast.load`); see `_quant_py` for the naming rules and `_quant_table` for
the compatibility rule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from olol._fast import load

__all__ = [
    "IMPLEMENTATION",
    "LEVELS",
    "base_name",
    "best_match",
    "candidates",
    "compatible",
    "normalize_level",
    "parse_level",
    "rank",
    "split_name",
]

if TYPE_CHECKING:
    from olol._fast._quant_py import (
        LEVELS,
        base_name,
        best_match,
        candidates,
        compatible,
        normalize_level,
        parse_level,
        rank,
        split_name,
    )
else:
    _impl = load("quant")
    LEVELS = _impl.LEVELS
    base_name = _impl.base_name
    best_match = _impl.best_match
    candidates = _impl.candidates
    compatible = _impl.compatible
    normalize_level = _impl.normalize_level
    parse_level = _impl.parse_level
    rank = _impl.rank
    split_name = _impl.split_name

# Module name of the implementation in use ("olol._fast.quant_c" or "olol._fast._quant_py").
IMPLEMENTATION: str = load("quant").__name__
