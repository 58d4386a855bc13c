"""OLOL's GGUF reader gives what `gguf.GGUFReader` gives for tensors (names, file offsets, sizes), only faster."""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest

from olol.backends.llamacpp.gguf_header import read_gguf_header
from olol.backends.llamacpp.tiny_model import write_tiny_model


@pytest.mark.parametrize("params", [{}, {"dtype": "f16"}])
def test_tensor_offsets_and_sizes_match_gguf_reader(tmp_path: Path, tiny_vocab: Path, params: dict[str, str]) -> None:
    path = write_tiny_model(tmp_path / "tiny.gguf", vocab=tiny_vocab, layers=2, width=64, ff=128, heads=4,
                            kv_heads=2, context=256, **params)
    header = read_gguf_header(path)
    ours = [(t.name, header.data_offset + t.offset, t.n_bytes) for t in header.tensors]
    theirs = [(t.name, int(t.data_offset), int(t.n_bytes)) for t in gguf.GGUFReader(path).tensors]
    assert ours == theirs
