"""The transfer building blocks on their own: stores, chunk checks, sha256 verification, resume."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import AsyncGenerator
from pathlib import Path

import pytest

from olol.errors import BadRequest, ModelNotFound, OlolError
from olol.proto import models_pb as pb
from olol.transfer.blobs import read_chunks, receive_blob
from olol.transfer.manifest import Layer, ModelManifest, digest_hex, gguf_file_name
from olol.transfer.stores import GgufDir, OllamaModelsDir
from olol.transfer.throttle import BandwidthLimiter
from tests.placement.models_dir import gguf_bytes, write_ollama_model


def test_ollama_models_dir_reads_what_ollama_wrote(tmp_path: Path) -> None:
    laid = write_ollama_model(
        tmp_path, "qwen:0.5b", gguf_bytes(1000), template="T", system="S", parameters={"stop": ["x"]}
    )
    write_ollama_model(tmp_path, "someone/tool", gguf_bytes(10, seed=2))
    store = OllamaModelsDir(tmp_path)
    assert sorted(i.name for i in store.inventory()) == ["qwen:0.5b", "someone/tool:latest"]
    manifest = store.manifest("QWEN:0.5b")  # names match as Ollama matches them
    assert [la.digest for la in manifest.layers] == [laid.weights_digest]
    assert (manifest.template, manifest.system, manifest.parameters, manifest.license) == (
        "T",
        "S",
        {"stop": ["x"]},
        "MIT",
    )
    assert store.blob_path(laid.weights_digest).read_bytes() == laid.weights
    body = ModelManifest.from_pb(manifest.to_pb()).create_request("copy:1")
    assert body == {
        "model": "copy:1",
        "files": {"model.gguf": laid.weights_digest},
        "template": "T",
        "system": "S",
        "license": "MIT",
        "parameters": {"stop": ["x"]},
    }
    with pytest.raises(ModelNotFound):
        store.manifest("absent")
    with pytest.raises(BadRequest):
        store.blob_path("sha256:../../etc/passwd")


def test_gguf_dir_names_models_after_files(tmp_path: Path) -> None:
    (tmp_path / "Tiny.gguf").write_bytes(b"GGUF-tiny")
    store = GgufDir(tmp_path)
    manifest = store.manifest("tiny")
    digest = "sha256:" + hashlib.sha256(b"GGUF-tiny").hexdigest()
    assert manifest.layers == [Layer(digest, 9, manifest.layers[0].media_type, "Tiny.gguf")]
    assert store.blob_path(digest) == tmp_path / "Tiny.gguf"
    assert gguf_file_name("tiny:latest") == "tiny.gguf" and gguf_file_name("x/y:8b-q4_0") == "x_y-8b-q4_0.gguf"
    assert digest_hex("sha256-" + "a" * 64) == "a" * 64


def _source(
    data: bytes,
    *,
    corrupt_at: set[int] = frozenset(),
    lie: bool = False,  # type: ignore[assignment]
    calls: list[int] | None = None,
):  # type: ignore[no-untyped-def]
    """A fake peer: 1 KiB chunks; `corrupt_at` flips a byte in those chunks once; `lie` sends wrong data."""
    spoiled: set[int] = set()

    async def read(digest: str, offset: int) -> AsyncGenerator[pb.BlobData, None]:
        if calls is not None:
            calls.append(offset)
        for pos in range(offset, len(data), 1024):
            chunk = data[pos : pos + 1024]
            crc = zlib.crc32(chunk)
            if lie:
                chunk = bytes(len(chunk))
                crc = zlib.crc32(chunk)
            elif pos in corrupt_at and pos not in spoiled:
                spoiled.add(pos)
                chunk = b"\x00" + chunk[1:]
            yield pb.BlobData(offset=pos, data=chunk, crc32=crc, total=len(data))

    return read


async def test_a_damaged_chunk_is_read_again_from_its_offset(tmp_path: Path) -> None:
    data = gguf_bytes(10_000, seed=9)
    layer = Layer("sha256:" + hashlib.sha256(data).hexdigest(), len(data))
    calls: list[int] = []
    lines = [x async for x in receive_blob(layer, tmp_path / "p", _source(data, corrupt_at={4096}, calls=calls))]
    assert (tmp_path / "p").read_bytes() == data and lines[-1]["completed"] == len(data)
    assert calls == [0, 4096]  # resumed at the bad chunk, not from the start


async def test_wrong_content_fails_sha256_and_is_thrown_away(tmp_path: Path) -> None:
    data = gguf_bytes(5000)
    layer = Layer("sha256:" + hashlib.sha256(data).hexdigest(), len(data))
    with pytest.raises(OlolError, match="sha256 mismatch"):
        [x async for x in receive_blob(layer, tmp_path / "p", _source(data, lie=True))]
    assert not (tmp_path / "p").exists()


async def test_a_partial_file_is_resumed(tmp_path: Path) -> None:
    data = gguf_bytes(8192, seed=4)
    (tmp_path / "p").write_bytes(data[:3000])
    layer = Layer("sha256:" + hashlib.sha256(data).hexdigest(), len(data))
    calls: list[int] = []
    lines = [x async for x in receive_blob(layer, tmp_path / "p", _source(data, calls=calls))]
    assert calls == [3000] and lines[0]["resumed_from"] == 3000
    assert (tmp_path / "p").read_bytes() == data


async def test_chunks_carry_offsets_and_crcs(tmp_path: Path) -> None:
    (tmp_path / "b").write_bytes(b"x" * 2500)
    chunks = [c async for c in read_chunks(tmp_path / "b", 500, 1000, BandwidthLimiter(1e9))]
    assert [c.offset for c in chunks] == [500, 1500]
    assert all(zlib.crc32(c.data) == c.crc32 and c.total == 2500 for c in chunks)
    with pytest.raises(BadRequest):
        [c async for c in read_chunks(tmp_path / "b", 9999)]
