"""Model names as Ollama compares them: `normalize` (its one home is `olol._fast.names`) and `same_model`."""

from __future__ import annotations

from olol._fast.names import normalize

__all__ = ["normalize", "same_model"]


def same_model(a: str, b: str) -> bool:
    return normalize(a) == normalize(b)
