"""What Ollama's /api/tags, /api/show and /api/ps say about a model, read from its GGUF file."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import gguf

from olol.backends.llamacpp.convert import rfc3339
from olol.backends.llamacpp.gguf_header import read_gguf_header
from olol.cluster.backend import JSON

__all__ = ["ModelFile", "human_parameters", "read_model_file", "sha256_file"]


@dataclass(frozen=True)
class ModelFile:
    path: Path
    size: int
    modified_at: str
    architecture: str
    parameter_count: int
    quantization: str
    chat_template: str | None
    model_info: JSON  # Ollama's `model_info`, arrays as None (as Ollama does unless verbose)

    def details(self) -> JSON:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.architecture,
            "families": [self.architecture] if self.architecture else None,
            "parameter_size": human_parameters(self.parameter_count),
            "quantization_level": self.quantization,
        }


def human_parameters(n: int) -> str:
    """Ollama's `format.HumanNumber`: 8030261312 -> "8.0B", 9176192 -> "9.18M"."""
    for unit, scale, digits in (("B", 1e9, 1), ("M", 1e6, 2)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f}{unit}" if value == int(value) else f"{value:.{digits}f}{unit}"
    if n >= 1000:
        return f"{n / 1000:.0f}K"
    return str(n)


def _quantization(file_type: int | None, tensor_types: Counter[str]) -> str:
    if file_type is not None:
        try:
            name: str = gguf.LlamaFileType(file_type).name
            return name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            pass
    # No (known) file type: the most common tensor type is what a human would call it.
    return tensor_types.most_common(1)[0][0] if tensor_types else "unknown"


def read_model_file(path: str | os.PathLike[str], *, verbose: bool = False) -> ModelFile:
    """Parse the GGUF header (tensor data is not read). `verbose` keeps arrays (the vocab)."""
    path = Path(path)
    header = read_gguf_header(path, arrays=verbose)
    info = dict(header.fields)
    n_params = sum(t.n_elements for t in header.tensors)
    info.setdefault("general.parameter_count", n_params)
    tensor_types = Counter(_type_name(t.type) for t in header.tensors)
    file_type = info.get("general.file_type")
    stat = path.stat()
    template = info.get("tokenizer.chat_template")
    return ModelFile(
        path=path,
        size=stat.st_size,
        modified_at=rfc3339(datetime.fromtimestamp(stat.st_mtime, UTC)),
        architecture=str(info.get("general.architecture", "")),
        parameter_count=int(info["general.parameter_count"]),
        quantization=_quantization(int(file_type) if file_type is not None else None, tensor_types),
        chat_template=template if isinstance(template, str) else None,
        model_info=info,
    )


def _type_name(ggml_type: int) -> str:
    try:
        return str(gguf.GGMLQuantizationType(ggml_type).name)
    except ValueError:
        return f"type{ggml_type}"


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
