"""ModelProfile: what each layer needs, from the GGUF header (shapes and types, not names or guesses)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from olol.split.model_source import ModelSourceError, resolve_model
from olol.split.profile import ModelProfile


def write_model(
    path: Path,
    *,
    layers: int = 3,
    width: int = 64,
    heads: int = 4,
    kv_heads: Any = 2,
    tied: bool = False,
    q8_layer: bool = False,
) -> Path:
    """A header-complete llama GGUF (zero weights): enough for the planner, not for inference."""
    w = gguf.GGUFWriter(path, "llama")
    w.add_block_count(layers)
    w.add_embedding_length(width)
    w.add_head_count(heads)
    if isinstance(kv_heads, list):
        w.add_key_value("llama.attention.head_count_kv", kv_heads, gguf.GGUFValueType.ARRAY,
                        sub_type=gguf.GGUFValueType.UINT32)  # fmt: skip
    else:
        w.add_head_count_kv(kv_heads)
    vocab = 100
    w.add_tensor("token_embd.weight", np.zeros((vocab, width), dtype=np.float32))
    for i in range(layers):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.zeros(width, dtype=np.float32))
        if q8_layer and i == 0:
            # Q8_0: blocks of 32 values in 34 bytes; 64 x 64 values -> 128 blocks -> 4352 bytes.
            raw = np.zeros((width, width // 32 * 34), dtype=np.uint8)
            w.add_tensor(f"blk.{i}.attn_q.weight", raw, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(f"blk.{i}.attn_q.weight", np.zeros((width, width), dtype=np.float16))
    w.add_tensor("output_norm.weight", np.zeros(width, dtype=np.float32))
    if not tied:
        w.add_tensor("output.weight", np.zeros((vocab, width), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_bytes_per_layer_output_and_kv(tmp_path: Path) -> None:
    p = ModelProfile.from_gguf(write_model(tmp_path / "m.gguf"), n_ctx=1000)
    assert p.n_layers == 3 and p.architecture == "llama"
    assert p.layer_bytes == (64 * 4 + 64 * 64 * 2,) * 3  # f32 norm + f16 matrix
    assert p.output_bytes == 100 * 64 * 2 + 64 * 4  # f16 output + f32 output norm
    assert p.embedding_bytes == 100 * 64 * 4  # stays on the coordinator
    # n_ctx x (K + V) x f16, with head_dim 16 and 2 KV heads (grouped-query attention).
    assert p.kv_bytes_per_layer == (1000 * (16 * 2 + 16 * 2) * 2,) * 3
    assert p.weight_bytes == sum(p.layer_bytes) + p.output_bytes


def test_quantized_tensors_and_kv_types(tmp_path: Path) -> None:
    path = write_model(tmp_path / "m.gguf", q8_layer=True)
    p = ModelProfile.from_gguf(path, n_ctx=1024, kv_type="q8_0")
    assert p.layer_bytes[0] == 64 * 4 + 64 * 64 // 32 * 34
    assert p.kv_bytes_per_layer[0] == int(1024 * 64 * 34 / 32)
    with pytest.raises(ValueError, match="unknown KV cache type"):
        ModelProfile.from_gguf(path, n_ctx=1024, kv_type="q3")


def test_tied_output_and_per_layer_kv_heads(tmp_path: Path) -> None:
    p = ModelProfile.from_gguf(write_model(tmp_path / "m.gguf", tied=True, kv_heads=[4, 2, 1]), n_ctx=10)
    assert p.output_bytes == p.embedding_bytes + 64 * 4  # llama.cpp reuses token_embd as the output layer
    assert p.kv_bytes_per_layer == tuple(10 * 16 * 2 * h * 2 for h in (4, 2, 1))


def test_ollama_names_resolve_through_manifests(tmp_path: Path) -> None:
    blob = tmp_path / "blobs" / "sha256-abc"
    blob.parent.mkdir()
    blob.write_bytes(b"GGUF")
    manifest = tmp_path / "manifests" / "registry.ollama.ai" / "library" / "tiny" / "latest"
    manifest.parent.mkdir(parents=True)
    layers = [{"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:t"},
              {"mediaType": "application/vnd.ollama.image.model", "digest": "sha256:abc"}]  # fmt: skip
    manifest.write_text(json.dumps({"layers": layers}))
    assert resolve_model("tiny", tmp_path) == blob
    assert resolve_model("tiny:latest", tmp_path) == blob
    assert resolve_model(str(blob)) == blob  # a path is a path
    with pytest.raises(ModelSourceError, match="neither a file nor an Ollama model"):
        resolve_model("tiny:7b", tmp_path)
    with pytest.raises(ModelSourceError, match="not found"):
        resolve_model(str(tmp_path / "missing.gguf"))
