"""A tiny llama-architecture GGUF with random weights, made on demand.

Tests and demos need a real model that llama.cpp loads and runs, without a
download and without committing binaries. Random weights give gibberish, but the
shapes, the tokenizer and the arithmetic are real, so everything around the model
(streaming, stats, cancellation, RPC splits, placement planning) is exercised for
real. The file is a pure function of its parameters, the vocab file and
`GENERATOR_VERSION`: the same inputs always give the same bytes, which is what
lets `ensure_tiny_model` cache it by a hash of those inputs.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import gguf
import numpy as np

from olol.backends.llamacpp.bins import cached_version_dirs, llama_cache_root
from olol.backends.llamacpp.gguf_header import read_gguf_header

__all__ = [
    "CHATML_TEMPLATE",
    "GENERATOR_VERSION",
    "TinyModelParams",
    "ensure_tiny_model",
    "find_vocab",
    "write_tiny_model",
]

# Bump whenever the bytes written for the same parameters change, so caches refresh.
GENERATOR_VERSION = 1

VOCAB_FILE = "ggml-vocab-llama-spm.gguf"

# ChatML, as llama.cpp itself falls back to, embedded so the chat prompt is a
# property of the model file rather than of the server's defaults. The assistant
# cue is unconditional on purpose: llama.cpp derives a "generation prompt" from
# the add_generation_prompt difference and prefills constrained-output grammars
# with it, which fails for SPM vocabularies that glue a space onto its first
# token ("Failed to initialize samplers"). Without the difference, `format`
# works in chat.
CHATML_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor -%}"
    "{{ '<|im_start|>assistant\\n' }}"
)

Dtype = Literal["f32", "f16"]


@dataclass(frozen=True)
class TinyModelParams:
    layers: int = 4
    width: int = 128
    ff: int = 512
    heads: int = 4
    kv_heads: int = 2  # grouped-query attention, so KV-size arithmetic is exercised
    context: int = 2048
    dtype: Dtype = "f32"
    seed: int = 0
    name: str = "tiny"
    chat_template: str | None = CHATML_TEMPLATE

    def __post_init__(self) -> None:
        if self.width % self.heads or self.heads % self.kv_heads:
            raise ValueError("width must be a multiple of heads, and heads a multiple of kv_heads")
        if (self.width // self.heads) % 2:
            raise ValueError("head dimension (width / heads) must be even for RoPE")
        if min(self.layers, self.width, self.ff, self.heads, self.kv_heads, self.context) < 1:
            raise ValueError("all sizes must be positive")


def find_vocab(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The llama SPM tokenizer GGUF that `scripts/build-llama-cpp.sh` caches.

    Looks in `<cache>/<version>/models/`, then in the unpacked source tree of a
    build in progress (`<cache>/<version>/src/vendor/llama.cpp/models/`).
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"vocab file not found: {path}")
        return path
    from_env = os.environ.get("OLOL_TINY_VOCAB")
    if from_env:
        return find_vocab(from_env)
    for version_dir in cached_version_dirs():
        for sub in ("models", "src/vendor/llama.cpp/models"):
            candidate = version_dir / sub / VOCAB_FILE
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        f"{VOCAB_FILE} not found under {llama_cache_root()}/*/models; run scripts/build-llama-cpp.sh "
        "(it caches the vocab next to the binaries) or set $OLOL_TINY_VOCAB"
    )


@functools.lru_cache(maxsize=4)
def _tokenizer_fields(vocab: Path, mtime_ns: int) -> tuple[tuple[str, Any, Any, Any], ...]:
    del mtime_ns  # part of the cache key only: an edited file is read again
    header = read_gguf_header(vocab, arrays=True)
    fields = []
    for key, value in header.fields.items():
        if key.startswith("tokenizer."):
            vtype, item = header.types[key]
            sub_type = gguf.GGUFValueType(int(item)) if item is not None else None
            fields.append((key, value, gguf.GGUFValueType(int(vtype)), sub_type))
    return tuple(fields)


def _copy_tokenizer(writer: Any, vocab: Path) -> int:
    """Copy every `tokenizer.*` key from the vocab GGUF; returns the vocab size."""
    n_vocab = 0
    for key, value, main_type, sub_type in _tokenizer_fields(vocab.resolve(), vocab.stat().st_mtime_ns):
        writer.add_key_value(key, value, main_type, sub_type=sub_type)
        if key == "tokenizer.ggml.tokens":
            n_vocab = len(value)
    if not n_vocab:
        raise ValueError(f"{vocab} has no tokenizer.ggml.tokens")
    return n_vocab


def _tensors(p: TinyModelParams, n_vocab: int) -> list[tuple[str, np.ndarray[Any, Any]]]:
    """Weights in llama.cpp's tensor names; numpy shapes are ggml's `ne` reversed."""
    rng = np.random.default_rng(p.seed)
    head_dim = p.width // p.heads
    kv_width = head_dim * p.kv_heads
    wtype = np.float32 if p.dtype == "f32" else np.float16

    def matrix(rows: int, cols: int, gain: float = 1.0) -> np.ndarray[Any, Any]:
        # 1/sqrt(fan_in) keeps activations O(1) through the random layers.
        scale = np.float32(gain / np.sqrt(cols))
        weights: np.ndarray[Any, Any] = rng.standard_normal((rows, cols), dtype=np.float32) * scale
        return weights.astype(wtype)

    def norm() -> np.ndarray[Any, Any]:
        return np.ones(p.width, dtype=np.float32)  # ggml wants norm weights in f32

    out: list[tuple[str, np.ndarray[Any, Any]]] = [("token_embd.weight", matrix(n_vocab, p.width, np.sqrt(p.width)))]
    for i in range(p.layers):
        out += [
            (f"blk.{i}.attn_norm.weight", norm()),
            (f"blk.{i}.attn_q.weight", matrix(p.width, p.width)),
            (f"blk.{i}.attn_k.weight", matrix(kv_width, p.width)),
            (f"blk.{i}.attn_v.weight", matrix(kv_width, p.width)),
            (f"blk.{i}.attn_output.weight", matrix(p.width, p.width)),
            (f"blk.{i}.ffn_norm.weight", norm()),
            (f"blk.{i}.ffn_gate.weight", matrix(p.ff, p.width)),
            (f"blk.{i}.ffn_up.weight", matrix(p.ff, p.width)),
            (f"blk.{i}.ffn_down.weight", matrix(p.width, p.ff)),
        ]
    # A peaked output distribution (logit std ~4) keeps greedy decoding clear of
    # near-ties, so batch-size-dependent rounding cannot flip the argmax.
    out += [("output_norm.weight", norm()), ("output.weight", matrix(n_vocab, p.width, 4.0))]
    return out


def write_tiny_model(
    path: str | os.PathLike[str],
    *,
    vocab: str | os.PathLike[str] | None = None,
    layers: int = 4,
    width: int = 128,
    ff: int = 512,
    heads: int = 4,
    kv_heads: int = 2,
    context: int = 2048,
    dtype: Dtype = "f32",
    seed: int = 0,
    name: str = "tiny",
    chat_template: str | None = CHATML_TEMPLATE,
) -> Path:
    """Write the model to `path` (atomically) and return it."""
    params = TinyModelParams(layers, width, ff, heads, kv_heads, context, dtype, seed, name, chat_template)
    return _write(Path(path), params, find_vocab(vocab))


def _write(path: Path, p: TinyModelParams, vocab: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename, so a concurrent reader never sees half a file.
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer = gguf.GGUFWriter(tmp, "llama")
        writer.add_name(p.name)
        writer.add_file_type(gguf.LlamaFileType.ALL_F32 if p.dtype == "f32" else gguf.LlamaFileType.MOSTLY_F16)
        writer.add_context_length(p.context)
        writer.add_embedding_length(p.width)
        writer.add_block_count(p.layers)
        writer.add_feed_forward_length(p.ff)
        writer.add_head_count(p.heads)
        writer.add_head_count_kv(p.kv_heads)
        writer.add_rope_dimension_count(p.width // p.heads)
        writer.add_rope_freq_base(10000.0)
        writer.add_layer_norm_rms_eps(1e-5)
        n_vocab = _copy_tokenizer(writer, vocab)
        writer.add_vocab_size(n_vocab)
        if p.chat_template:
            writer.add_chat_template(p.chat_template)
        for tensor_name, data in _tensors(p, n_vocab):
            writer.add_tensor(tensor_name, data)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        tmp.chmod(0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _cache_key(p: TinyModelParams, vocab: Path) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"generator": GENERATOR_VERSION, **asdict(p)}, sort_keys=True).encode())
    h.update(hashlib.sha256(vocab.read_bytes()).digest())
    return h.hexdigest()[:16]


def ensure_tiny_model(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    vocab: str | os.PathLike[str] | None = None,
    **params: Any,
) -> Path:
    """The cached model for these parameters, written first if missing.

    `params` are `write_tiny_model`'s keywords. The file is `<hash>/<name>.gguf`
    (the stem stays the model's name, which servers use as its default alias);
    the hash covers the parameters, the vocab bytes and `GENERATOR_VERSION`.
    The default cache is `<llama cache root>/models`.
    """
    p = TinyModelParams(**params)
    vocab_path = find_vocab(vocab)
    directory = Path(cache_dir) if cache_dir is not None else llama_cache_root() / "models"
    path = directory / _cache_key(p, vocab_path) / f"{p.name}.gguf"
    if path.is_file():
        return path
    return _write(path, p, vocab_path)
