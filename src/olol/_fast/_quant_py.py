"""Quantization levels in model names, and which level can stand in for which.

Pure-Python twin of `quant_c.pyx` (same API, same behaviour); import the facade
`olol._fast.quant` rather than this module. The rule itself lives in
`_quant_table`.

Names are compared as Ollama compares them (`olol._fast.names.normalize`: case-insensitively,
without the default registry, with the default tag: `llama3` is `llama3:latest`), and a GGUF
file's name without `.gguf`. The level is the last `-`, `.` or `_`-separated part of the
tag (or, for a name without a tag such as a GGUF file name, of the name), so
`llama3:8b-instruct-Q4_K_M` is base `llama3:8b-instruct` at `q4_k_m`, and
`Llama-3-8B.Q4_K_M.gguf` is base `llama-3-8b:latest` at `q4_k_m`.
"""

from __future__ import annotations

from collections.abc import Sequence

from olol._fast._quant_table import (
    CANDIDATE_POSITION,
    CANDIDATES,
    LEVELS,
    MAX_LEVEL_LENGTH,
    RANK,
    SEPARATORS,
    TOKENS,
    UNSPECIFIED_POSITION,
)
from olol._fast.names import drop_default_prefix, normalize

__all__ = [
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

_GGUF = ".gguf"


def _clean(name: str) -> str:
    """Lower-case, without `.gguf` and the default registry: what the parser reads."""
    s = name.strip().lower()
    return drop_default_prefix(s[: -len(_GGUF)] if s.endswith(_GGUF) else s)


def split_name(name: str) -> tuple[str, str | None]:
    """(base name with tag, canonical level or None): `llama3:8b-q4_0` -> (`llama3:8b`, `q4_0`)."""
    s = _clean(name)
    n = len(s)
    colon = s.rfind(":")
    tagged = colon > s.rfind("/")
    start = colon + 1 if tagged else s.rfind("/") + 1
    level: str | None = None
    cut = n
    # The whole tag can be the level (`model:Q4_K_M`); otherwise look for a
    # separator in the last few characters, nearest the start first so the
    # longest token wins (`-q4_k_m` rather than `_m`).
    if n - start <= MAX_LEVEL_LENGTH:
        level = TOKENS.get(s[start:])
        cut = start
    if level is None:
        for p in range(max(start, n - MAX_LEVEL_LENGTH - 1), n - 1):
            if s[p] in SEPARATORS:
                level = TOKENS.get(s[p + 1 :])
                if level is not None:
                    cut = p
                    break
    if level is None:
        return (s if tagged else s + ":latest"), None
    if tagged:
        return s[:colon] + ":" + (s[start:cut] or "latest"), level
    if cut == start:
        # The name *is* a level token (`q4_0`, `library/q4_0`): a model called that, not a quant.
        return s + ":latest", None
    return s[:cut] + ":latest", level


def parse_level(name: str) -> str | None:
    """The canonical quant level a model name carries, or None."""
    return split_name(name)[1]


def base_name(name: str) -> str:
    """The normalized name without its quant level."""
    return split_name(name)[0]


def normalize_level(level: str) -> str | None:
    """`Q4_K_M` -> `q4_k_m`, `fp16` -> `f16`; None for an unknown level."""
    return TOKENS.get(level.strip().lower())


def rank(level: str) -> int:
    """Quality rank (higher is better, see `LEVELS`); -1 for an unknown level."""
    canonical = TOKENS.get(level.strip().lower())
    return -1 if canonical is None else RANK[canonical]


def compatible(requested: str, available: str) -> bool:
    """Whether a model at level `available` may serve a request for level `requested`.

    Unknown levels only match themselves (case-insensitively).
    """
    req = requested.strip().lower()
    avail = available.strip().lower()
    req_level = TOKENS.get(req)
    avail_level = TOKENS.get(avail)
    if req_level is None or avail_level is None:
        return req == avail
    return avail_level in CANDIDATE_POSITION[req_level]


def candidates(requested: str) -> list[str]:
    """Levels that may serve `requested`, preferred first: exact, then closest higher quality."""
    req = requested.strip().lower()
    level = TOKENS.get(req)
    return [req] if level is None else list(CANDIDATES[level])


def best_match(requested_model: str, available_models: Sequence[str]) -> str | None:
    """The available model that best serves `requested_model`, or None.

    An exact name (after normalization) wins; otherwise the same base model at
    the most preferred compatible level (`candidates` order; with no level
    requested, the best quantized one). Ties keep the order of `available_models`.
    """
    wanted = normalize(_clean(requested_model))
    base, level = split_name(requested_model)
    preference = UNSPECIFIED_POSITION if level is None else CANDIDATE_POSITION[level]
    best: str | None = None
    best_position = len(LEVELS)
    for name in available_models:
        if normalize(_clean(name)) == wanted:
            return name
        other_base, other_level = split_name(name)
        if other_level is None or other_base != base:
            continue
        position = preference.get(other_level)
        if position is not None and position < best_position:
            best, best_position = name, position
    return best
