"""The tiny random-weight llama GGUF: deterministic, well-formed, cached."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import gguf
import pytest

from olol.backends.llamacpp.gguf_header import read_gguf_header
from olol.backends.llamacpp.tiny_model import (
    GENERATOR_VERSION,
    TinyModelParams,
    ensure_tiny_model,
    find_vocab,
    write_tiny_model,
)

SMALL: dict[str, Any] = {"layers": 2, "width": 64, "ff": 128, "heads": 4, "kv_heads": 2, "context": 256}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_parameters_give_the_same_bytes(tmp_path: Path, tiny_vocab: Path) -> None:
    first = write_tiny_model(tmp_path / "a" / "tiny.gguf", vocab=tiny_vocab, **SMALL)
    second = write_tiny_model(tmp_path / "b" / "tiny.gguf", vocab=tiny_vocab, **SMALL)
    assert sha256(first) == sha256(second)
    reseeded = write_tiny_model(tmp_path / "c" / "tiny.gguf", vocab=tiny_vocab, seed=1, **SMALL)
    assert sha256(reseeded) != sha256(first)


def test_metadata_tokenizer_and_tensor_shapes(tmp_path: Path, tiny_vocab: Path) -> None:
    path = write_tiny_model(tmp_path / "tiny.gguf", vocab=tiny_vocab, **SMALL)
    header = read_gguf_header(path, arrays=True)
    meta = header.fields
    assert meta["general.architecture"] == "llama"
    assert meta["llama.block_count"] == 2
    assert meta["llama.embedding_length"] == 64
    assert meta["llama.feed_forward_length"] == 128
    assert meta["llama.attention.head_count"] == 4
    assert meta["llama.attention.head_count_kv"] == 2
    assert meta["llama.rope.dimension_count"] == 16
    assert meta["llama.context_length"] == 256
    assert meta["general.file_type"] == gguf.LlamaFileType.ALL_F32

    vocab = read_gguf_header(tiny_vocab, arrays=True)
    for key, value in vocab.fields.items():
        if key.startswith("tokenizer."):
            assert meta[key] == value, key
    n_vocab = len(meta["tokenizer.ggml.tokens"])
    assert n_vocab == 32000

    shapes = {t.name: t.shape for t in header.tensors}  # ggml `ne` order
    assert shapes["token_embd.weight"] == (64, n_vocab)
    assert shapes["output.weight"] == (64, n_vocab)
    assert shapes["blk.1.attn_q.weight"] == (64, 64)
    assert shapes["blk.1.attn_k.weight"] == (64, 32)  # 2 kv heads x 16
    assert shapes["blk.1.ffn_down.weight"] == (128, 64)
    assert len(shapes) == 2 + 1 + 2 * 9


def test_f16_variant_halves_the_matrices(tmp_path: Path, tiny_vocab: Path) -> None:
    f32 = write_tiny_model(tmp_path / "f32.gguf", vocab=tiny_vocab, **SMALL)
    f16 = write_tiny_model(tmp_path / "f16.gguf", vocab=tiny_vocab, dtype="f16", **SMALL)
    types = {t.name: t.type for t in read_gguf_header(f16).tensors}
    assert types["blk.0.attn_q.weight"] == gguf.GGMLQuantizationType.F16
    assert types["blk.0.attn_norm.weight"] == gguf.GGMLQuantizationType.F32  # norms stay f32 for ggml
    assert f16.stat().st_size < 0.6 * f32.stat().st_size


def test_ensure_caches_by_parameters(tmp_path: Path, tiny_vocab: Path) -> None:
    path = ensure_tiny_model(tmp_path, vocab=tiny_vocab, **SMALL)
    assert path.stem == "tiny"  # the stem is what servers use as the model's name
    written = path.stat().st_mtime_ns
    assert ensure_tiny_model(tmp_path, vocab=tiny_vocab, **SMALL) == path
    assert path.stat().st_mtime_ns == written  # a cache hit, not a rewrite
    other = ensure_tiny_model(tmp_path, vocab=tiny_vocab, **{**SMALL, "layers": 1})
    assert other != path and other.is_file()
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no debris
    assert GENERATOR_VERSION >= 1


def test_default_model_matches_the_notes(tiny_model: Path) -> None:
    # 4 layers x 128 wide in f32 with the 32000-token SPM vocab: ~38 MB.
    assert 36e6 < tiny_model.stat().st_size < 39e6
    fields = read_gguf_header(tiny_model).fields
    assert fields["llama.block_count"] == 4
    assert fields["llama.embedding_length"] == 128


@pytest.mark.parametrize(
    "bad",
    [{"width": 100, "heads": 3}, {"heads": 4, "kv_heads": 3}, {"width": 12, "heads": 4}, {"layers": 0}],
)
def test_rejects_impossible_shapes(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        TinyModelParams(**bad)  # type: ignore[arg-type]


def test_find_vocab_explains_what_to_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLOL_LLAMA_CACHE", str(tmp_path))
    monkeypatch.delenv("OLOL_TINY_VOCAB", raising=False)
    with pytest.raises(FileNotFoundError, match=r"build-llama-cpp\.sh"):
        find_vocab()
    with pytest.raises(FileNotFoundError):
        find_vocab(tmp_path / "nope.gguf")


def test_fast_header_reader_agrees_with_gguf(tmp_path: Path, tiny_vocab: Path) -> None:
    path = write_tiny_model(tmp_path / "tiny.gguf", vocab=tiny_vocab, **SMALL)
    ours = read_gguf_header(path, arrays=True)
    theirs = gguf.GGUFReader(path)
    for key, field in theirs.fields.items():
        if not key.startswith("GGUF."):
            assert ours.fields[key] == pytest.approx(field.contents()), key
            assert int(ours.types[key][0]) == int(field.types[0]), key
    assert [(t.name, t.shape, t.type) for t in ours.tensors] == [
        (t.name, tuple(int(d) for d in t.shape), int(t.tensor_type)) for t in theirs.tensors
    ]
    assert read_gguf_header(path).fields["tokenizer.ggml.tokens"] is None  # arrays skipped by default
    (tmp_path / "cut.gguf").write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ValueError, match="truncated"):
        read_gguf_header(tmp_path / "cut.gguf")
    (tmp_path / "not.gguf").write_bytes(b"nope" * 10)
    with pytest.raises(ValueError, match="not a GGUF"):
        read_gguf_header(tmp_path / "not.gguf")
