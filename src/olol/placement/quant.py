"""Smart quantization: which variant of a model to place on a host, given its free memory.

Names and the compatibility rule come from `olol._fast.quant` (the quant
table); this module adds sizes. A model of P parameters at a level of b bits
per weight needs about P * b / 8 bytes of weights, plus room for the KV cache
and compute buffers (`RUNTIME_OVERHEAD`). The bits per weight are llama.cpp's
published file sizes for Llama-3-8B (tools/quantize), which already count the
embedding and output tensors kept at higher precision.

The order for a pull (or an on-demand load) that names a level explicitly
(`--quantize q5_0`, or `model:8b-q5_0`) is the seed's:
1. the asked model, if a host has it;
2. else a compatible higher-quality one already loaded somewhere (no download);
3. else the asked one from the registry;
4. else the best level that fits the host.
A name without a level takes the best level that fits the host, then the name
as given (the registry's default build) if no level-suffixed tag exists.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from olol._fast import quant
from olol.cluster import normalize

__all__ = [
    "BITS_PER_WEIGHT",
    "LADDER",
    "RUNTIME_OVERHEAD",
    "Substitution",
    "estimated_bytes",
    "host_preferred_level",
    "parameter_count",
    "variant_name",
    "variants_for_host",
]

# Bits per weight by level: llama.cpp's Llama-3-8B file sizes (GiB) * 2^30 * 8 / 8.03e9.
BITS_PER_WEIGHT: Mapping[str, float] = {
    "q2_k": 3.17, "q3_k_s": 3.65, "q3_k_m": 4.00, "q3_k_l": 4.31, "q4_0": 4.64, "q4_1": 5.11,
    "q4_k_s": 4.67, "q4_k_m": 4.90, "q5_0": 5.57, "q5_1": 6.04, "q5_k_s": 5.57, "q5_k_m": 5.70,
    "q6_k": 6.57, "q8_0": 8.51, "f16": 16.0, "bf16": 16.0, "f32": 32.0,
}  # fmt: skip
#: Memory on top of the weights for the KV cache at a default context and compute buffers.
RUNTIME_OVERHEAD = 1.2
#: Levels tried for "the best that fits", best first: what Ollama's library publishes as tags,
#: ordered by the quant table's quality rank. Floats are left out: q8_0 is near-lossless at half the size.
LADDER: tuple[str, ...] = tuple(
    sorted((lv for lv in BITS_PER_WEIGHT if not lv.startswith(("f", "bf"))), key=lambda lv: -quant.rank(lv))
)
# Ollama's tags spell K-quant suffixes in capitals (q4_K_M) and floats as fp16.
_SPELLING = {"f16": "fp16", "f32": "fp32"}
_SIZE = re.compile(r"(?<![\w.])(?:(\d+)x)?(\d+(?:\.\d+)?)([bmk])(?![a-z])")
_SCALE = {"b": 1e9, "m": 1e6, "k": 1e3}


@dataclass(frozen=True)
class Substitution:
    """A model placed or served in place of the one asked for, and why (shown in replies and logs)."""

    requested: str
    placed: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"requested": self.requested, "placed": self.placed, "reason": self.reason}


def parameter_count(model: str, known: Iterable[Mapping[str, Any]] = ()) -> float | None:
    """Parameters of `model`: from a host's report of any variant of it (`known` /api/tags entries), else its tag."""
    base = quant.base_name(model)
    for entry in known:
        name = str(entry.get("name") or entry.get("model") or "")
        if quant.base_name(name) != base:
            continue
        size = str((entry.get("details") or {}).get("parameter_size") or "")
        if found := _parse_size(size.lower()):
            return found
    return _parse_size(base.rsplit(":", 1)[-1])


def _parse_size(text: str) -> float | None:
    m = _SIZE.search(text)
    if m is None:
        return None
    experts = int(m.group(1)) if m.group(1) else 1
    return experts * float(m.group(2)) * _SCALE[m.group(3)]


def estimated_bytes(parameters: float, level: str) -> int:
    """Memory to run `parameters` at `level`: weights plus runtime overhead."""
    bits = BITS_PER_WEIGHT.get(quant.normalize_level(level) or level, 16.0)
    return int(parameters * bits / 8 * RUNTIME_OVERHEAD)


def variant_name(model: str, level: str) -> str:
    """`llama3:8b` at q4_k_m -> `llama3:8b-q4_K_M`; an untagged model takes the level as its tag."""
    base = quant.base_name(model)  # normalised, without any level the name had
    canonical = quant.normalize_level(level) or level.lower()
    spelled = _SPELLING.get(canonical, re.sub(r"_([ksml])\b", lambda m: "_" + m.group(1).upper(), canonical))
    spelled = re.sub(r"_([ksml])(?=_|$)", lambda m: "_" + m.group(1).upper(), spelled)
    name, _, tag = base.rpartition(":")
    return f"{name}:{spelled}" if tag == "latest" else f"{name}:{tag}-{spelled}"


def host_preferred_level(hardware: Mapping[str, Any]) -> str | None:
    """The quant level a host is tuned for (`olol server --quantize` / OLLAMA_QUANTIZE, as it reports it),
    or None for the default f16 (no preference: pulling f16 weights by default would be a surprise)."""
    settings = hardware.get("settings")
    level = settings.get("quantize") if isinstance(settings, Mapping) else None
    if not isinstance(level, str) or level in ("", "f16"):
        return None
    return quant.normalize_level(level)


def variants_for_host(
    requested: str, *, quantize: str | None, free_bytes: int | None, parameters: float | None
) -> list[str]:
    """Names to try on one host, best first (see the module docstring for the order)."""
    asked_level = quant.normalize_level(quantize) if quantize else quant.parse_level(requested)
    if quantize and asked_level is None:
        raise ValueError(f"unknown quantization {quantize!r}")
    fitting: list[str] = []
    if parameters is not None:
        fitting = [
            variant_name(requested, lv)
            for lv in LADDER
            if free_bytes is None or estimated_bytes(parameters, lv) <= free_bytes
        ]
        if free_bytes is None:
            fitting = []  # nothing known about the host: no basis to prefer one level over another
    if asked_level is not None:
        asked = variant_name(requested, asked_level) if quantize else requested
        return _unique([asked, *fitting])
    return _unique([*fitting, requested])


def _unique(names: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for name in names:
        if normalize(name) not in seen:
            seen.add(normalize(name))
            out.append(name)
    return out


def loaded_substitute(requested: str, loaded: Iterable[str]) -> str | None:
    """A compatible model of higher quality already loaded somewhere (step 2 of the seed's order), or None."""
    level = quant.parse_level(requested)
    if level is None:
        return None
    found = quant.best_match(requested, list(loaded))
    return found if found is not None and normalize(found) != normalize(requested) else None
