"""The model catalogue: what a model is (`ModelSpec`) and the sets a simulator starts with."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field

from tests.support.ollama_sim._digests import _blob_of, _sha256
from tests.support.ollama_sim._names import normalize_name
from tests.support.ollama_sim._wire import JSON

_FAMILIES = (
    ("nomic", "nomic-bert"), ("all-minilm", "bert"), ("mxbai", "bert"), ("bge", "bert"),
    ("qwen3", "qwen3"), ("qwen", "qwen2"), ("gemma3", "gemma3"), ("gemma", "gemma"),
    ("mistral", "llama"), ("phi3", "phi3"), ("llama", "llama"),
)  # fmt: skip
_BYTES_PER_PARAM = (("Q4", 0.6), ("Q5", 0.7), ("Q6", 0.82), ("Q8", 1.07), ("BF16", 2.0), ("F16", 2.0))
_FILE_TYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q8_0": 7, "Q4_K_M": 15, "Q5_K_M": 17, "Q6_K": 18, "BF16": 32}
_LLAMA_STOPS = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def _param_count(size: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMBT])", size.upper())
    if m is None:
        return 1e9
    return float(m.group(1)) * {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}[m.group(2)]


@dataclass
class ModelSpec:
    """One local (or pullable) model. Fields left empty are filled from the name, the way
    `llama3.2:1b-q8_0` tells a person its size and quantization."""

    name: str
    size: int = 0
    digest: str = ""  # manifest digest, hex without "sha256:" as /api/tags shows it
    family: str = ""
    parameter_size: str = ""
    quantization_level: str = ""
    format: str = "gguf"
    embedding_dim: int = 0
    context_length: int = 0
    capabilities: list[str] = field(default_factory=list)
    template: str = ""
    system: str = ""
    license: str = ""
    parameters: JSON = field(default_factory=dict)
    modified_at_ns: int = 0

    def __post_init__(self) -> None:
        self.name = normalize_name(self.name)
        base, _, tag = self.name.rsplit("/", 1)[-1].lower().partition(":")
        embedding = any(k in base for k in ("embed", "minilm", "bge"))
        if not self.capabilities:
            caps = ["embedding"] if embedding else ["completion", "tools"]
            if base.startswith(("qwen3", "deepseek-r1", "gpt-oss", "magistral")):
                caps.append("thinking")
            if "vision" in base or "llava" in base:
                caps.append("vision")
            if "coder" in base:
                caps.append("insert")
            self.capabilities = caps
        if not self.family:
            found = next((fam for prefix, fam in _FAMILIES if base.startswith(prefix)), None)
            letters = re.match(r"[a-z]+", base)
            self.family = found or (letters.group() if letters else "llama")
        if not self.parameter_size:
            m = re.search(r"(?<![\w.])(\d+(?:\.\d+)?)([bm])(?![a-z])", tag)
            self.parameter_size = f"{m.group(1)}{m.group(2).upper()}" if m else ("137M" if embedding else "3.2B")
        if not self.quantization_level:
            m = re.search(r"(q\d(?:_[0-9a-z]+)*|bf16|fp16|f16|fp32|f32)", tag)
            q = m.group(1).upper().replace("FP", "F") if m else ("F16" if embedding else "Q4_K_M")
            self.quantization_level = q
        params = _param_count(self.parameter_size)
        if not self.size:
            bpp = next((b for p, b in _BYTES_PER_PARAM if self.quantization_level.startswith(p)), 4.0)
            self.size = int(params * bpp)
        self.digest = self.digest.removeprefix("sha256:") or _sha256(self.name.encode())
        if not self.embedding_dim:
            self.embedding_dim = 768 if embedding else (2048 if params < 2e9 else 3072 if params < 5e9 else 4096)
        if not self.context_length:
            self.context_length = 2048 if embedding else 131072
        if not self.template:
            self.template = "{{ .Prompt }}" if embedding else "{{ if .System }}{{ .System }}\n{{ end }}{{ .Prompt }}"
        if not self.parameters and self.family == "llama" and not embedding:
            self.parameters = {"stop": list(_LLAMA_STOPS)}
        if not self.modified_at_ns:
            self.modified_at_ns = time.time_ns()

    def supports(self, capability: str) -> bool:
        return capability in self.capabilities

    def details(self) -> JSON:
        return {
            "parent_model": "",
            "format": self.format,
            "family": self.family,
            "families": [self.family],
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization_level,
        }

    def layers(self) -> list[tuple[str, int]]:
        """(digest, size) of the blobs a manifest of this model would list."""
        parts = [
            ("sha256:" + _sha256(f"{self.digest}:model".encode()), self.size),
            _blob_of(self.template),
            _blob_of(json.dumps(self.parameters, sort_keys=True)),
        ]
        if self.system:
            parts.append(_blob_of(self.system))
        if self.license:
            parts.append(_blob_of(self.license))
        return parts


def default_models() -> list[ModelSpec]:
    """What the `ollama_sim` fixture starts with: two chat models, an embedder, a thinker."""
    return [
        ModelSpec("llama3.2:latest", quantization_level="Q4_0", parameter_size="3.2B"),
        ModelSpec("llama3.2:1b-q8_0", parameter_size="1.2B"),
        ModelSpec("nomic-embed-text:latest"),
        ModelSpec("qwen3:0.6b"),
    ]


def default_registry() -> list[ModelSpec]:
    """What `/api/pull` can fetch unless a test configures its own registry."""
    return [*default_models(), ModelSpec("qwen2.5:0.5b"), ModelSpec("all-minilm:latest")]
