"""The quantization levels OLOL knows, their quality order and the compatibility rule.

Both quant implementations (`_quant_py`, `quant_c`) only look things up in the
tables built here, so the rule is defined once.

Quality order: where llama.cpp's `quantize` tool publishes a perplexity increase
(tools/quantize/quantize.cpp, Llama-3-8B) the order follows it, which puts e.g.
q4_k_s above q4_1 although q4_1 is bigger. Levels without a published figure
(I-quants, ternary, mxfp4) sit by bits per weight, I-quants just above the
K-quant they match in practice.

Compatibility (`requested <- available`):

* Float levels (f16, bf16, f32) only match themselves: asking for one means
  "unquantized", and a float in place of a quant costs 2-4x the memory.
* The seed matrix, kept verbatim: legacy block quants are served only by legacy
  levels of equal or higher quality (q4_0 <- q4_0 q4_1 q5_0 q5_1 q8_0,
  q5_0 <- q5_0 q5_1 q8_0, q8_0 <- q8_0).
* Generalised: a quantized request is served by a level of equal or higher
  quality from its own family or an older, more widely supported one
  (legacy < K-quants < I-quants), never by a newer format than was asked for.
  So q4_k_m <- q4_k_m q5_0 q5_1 q5_k_s q5_k_m q6_k q8_0, and
  iq4_xs <- iq4_xs q4_k_s iq4_nl q4_k_m ... q8_0.
* Ternary (tq1_0, tq2_0) only trade among themselves: they exist for
  ternary-trained models, which no other format reproduces; mxfp4 (gpt-oss's
  native format) only matches itself.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "ALIASES",
    "CANDIDATES",
    "CANDIDATE_POSITION",
    "FAMILY",
    "LEVELS",
    "MAX_LEVEL_LENGTH",
    "RANK",
    "SEPARATORS",
    "TOKENS",
    "UNSPECIFIED_POSITION",
]

# Lowest to highest quality (see the module docstring for the sources).
LEVELS: tuple[str, ...] = (
    "iq1_s",
    "tq1_0",
    "iq1_m",
    "iq2_xxs",
    "tq2_0",
    "iq2_xs",
    "iq2_s",
    "iq2_m",
    "q2_k",
    "q2_k_s",  # smaller file, yet a lower published perplexity increase than q2_k
    "iq3_xxs",
    "iq3_xs",
    "q3_k_s",
    "iq3_s",
    "q3_k_m",
    "iq3_m",
    "q3_k_l",
    "q4_0",
    "q4_1",
    "mxfp4",
    "iq4_xs",
    "q4_k_s",
    "iq4_nl",
    "q4_k_m",
    "q5_0",
    "q5_1",
    "q5_k_s",
    "q5_k_m",
    "q6_k",
    "q8_0",
    "f16",
    "bf16",
    "f32",
)


def _family(level: str) -> str:
    if level in ("f16", "bf16", "f32"):
        return "float"
    if level == "mxfp4":
        return "mxfp4"
    if level.startswith("tq"):
        return "ternary"
    if level.startswith("iq"):
        return "i"
    return "k" if "_k" in level else "legacy"


FAMILY: Mapping[str, str] = {level: _family(level) for level in LEVELS}

# Which families a request of each family accepts (besides the exact level).
_ACCEPTS: Mapping[str, frozenset[str]] = {
    "legacy": frozenset({"legacy"}),
    "k": frozenset({"legacy", "k"}),
    "i": frozenset({"legacy", "k", "i"}),
    "ternary": frozenset({"ternary"}),
    "mxfp4": frozenset(),
    "float": frozenset(),
}

# Other spellings seen in Ollama tags and GGUF file names; `quantize` itself
# accepts q3_k / q4_k / q5_k as the _m variants.
ALIASES: Mapping[str, str] = {
    "fp16": "f16",
    "fp32": "f32",
    "q3_k": "q3_k_m",
    "q4_k": "q4_k_m",
    "q5_k": "q5_k_m",
}

# Every lower-case token that names a level, mapped to its canonical name.
TOKENS: Mapping[str, str] = {**{level: level for level in LEVELS}, **ALIASES}
MAX_LEVEL_LENGTH = max(len(token) for token in TOKENS)
# What may separate a quant suffix from the rest of a tag or file name
# ("8b-instruct-q4_0", "Llama-3-8B.Q4_K_M.gguf", "phi3_mini_q4_k_m").
SEPARATORS = "-._"

RANK: Mapping[str, int] = {level: i for i, level in enumerate(LEVELS)}


def _accepts(requested: str, available: str) -> bool:
    if requested == available:
        return True
    return FAMILY[available] in _ACCEPTS[FAMILY[requested]] and RANK[available] > RANK[requested]


# Preference order per request: the exact level first, then the closest higher quality.
CANDIDATES: Mapping[str, tuple[str, ...]] = {
    req: (req, *(a for a in LEVELS if a != req and _accepts(req, a))) for req in LEVELS
}
CANDIDATE_POSITION: Mapping[str, Mapping[str, int]] = {
    req: {a: i for i, a in enumerate(cands)} for req, cands in CANDIDATES.items()
}

# A model asked for without a level ("llama3:8b") takes any level of the same
# base: the best quantized one first (Ollama's untagged builds are quantized),
# floats last because they need 2-4x the memory.
_FLOATS = ("f16", "bf16", "f32")
UNSPECIFIED_POSITION: Mapping[str, int] = {
    level: i for i, level in enumerate([*(lv for lv in reversed(LEVELS) if lv not in _FLOATS), *_FLOATS])
}
