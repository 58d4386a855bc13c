"""Adapter to the quantization facade (`olol._fast.quant`).

The proxy only needs one question answered: "which of these models may serve a
request for that one?". The facade is imported lazily so the proxy still runs
(without fallback) where it is absent, and tests can inject a matcher.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

__all__ = ["BestMatch", "QuantMatcher"]

log = logging.getLogger(__name__)

BestMatch = Callable[[str, Sequence[str]], "str | None"]


def _load_facade() -> BestMatch | None:
    try:
        from olol._fast import quant
    except ImportError:
        log.warning("olol._fast.quant is not available: quantization fallback disabled")
        return None
    best_match: BestMatch = quant.best_match
    return best_match


class QuantMatcher:
    def __init__(self, best_match: BestMatch | None = None) -> None:
        self._best_match = best_match
        self._loaded = best_match is not None

    def match(self, requested: str, available: Sequence[str]) -> str | None:
        """A model in `available` compatible with `requested` (possibly itself), or None."""
        if not self._loaded:
            self._best_match = _load_facade()
            self._loaded = True
        if self._best_match is None or not available:
            return None
        found = self._best_match(requested, list(available))
        # Trust but verify: the facade must pick from what we offered.
        return found if found in available else None
