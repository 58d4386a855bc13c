"""Copies that run behind a download: a blob is served while it arrives, the registry is read once."""

from __future__ import annotations

import asyncio
import hashlib
import json
import zlib
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from olol.errors import OlolError
from olol.proto import models_pb as pb
from olol.transfer.blobs import Chunk, receive_blob
from olol.transfer.client import TransferClient
from olol.transfer.growing import GrowingBlob, follow_chunks
from olol.transfer.manifest import Layer, blob_file_name
from olol.transfer.registry import RegistrySource, registry_path
from tests.placement.models_dir import gguf_bytes, write_ollama_model
from tests.placement.registry import RegistryStandIn
from tests.proxy.helpers import proxy_over

MODEL = "tiny-chat:latest"
MiB = 1024 * 1024


async def _collect(chunks: Any, into: asyncio.Queue[pb.BlobData]) -> None:
    async for chunk in chunks:
        await into.put(chunk)


async def _take(queue: asyncio.Queue[pb.BlobData], until: int, have: int = 0) -> tuple[int, bytes]:
    data = b""
    while have < until:
        chunk = await asyncio.wait_for(queue.get(), 10)
        assert chunk.offset == have
        data += chunk.data
        have += len(chunk.data)
    return have, data


async def test_a_growing_blob_is_followed_and_its_end_waits_for_verification(tmp_path: Path) -> None:
    content = bytes(range(256)) * 16  # 4096 bytes
    path = tmp_path / "blob.partial"
    path.write_bytes(b"")
    blob = GrowingBlob("sha256:" + hashlib.sha256(content).hexdigest(), len(content), path)
    queue: asyncio.Queue[pb.BlobData] = asyncio.Queue()
    reader = asyncio.create_task(_collect(follow_chunks(blob, 0, 1024), queue))
    with path.open("ab") as out:
        out.write(content[:3000])
    blob.grew(3000)
    have, first = await _take(queue, 3000)
    with path.open("ab") as out:
        out.write(content[3000:])
    blob.grew(len(content))
    have, second = await _take(queue, len(content) - 1, have)  # all but the end: not verified yet
    assert not reader.done() and queue.empty()
    blob.finish()  # verified
    _, last = await _take(queue, len(content), have)
    await asyncio.wait_for(reader, 10)
    assert first + second + last == content


async def test_a_follower_gets_the_error_when_the_download_fails(tmp_path: Path) -> None:
    path = tmp_path / "blob.partial"
    path.write_bytes(b"x" * 100)
    blob = GrowingBlob("sha256:" + "0" * 64, 1000, path)
    blob.grew(100)
    chunks = follow_chunks(blob, 0)
    assert (await anext(chunks)).data == b"x" * 100
    blob.finish("sha256 mismatch")
    with pytest.raises(OlolError, match="sha256 mismatch"):
        await anext(chunks)


async def test_followers_get_the_crc_the_writer_checked_not_one_of_their_own_read(tmp_path: Path) -> None:
    content = gguf_bytes(3000, seed=3)

    async def peer(digest: str, offset: int) -> Any:
        for pos in range(offset, len(content), 1024):
            yield pb.BlobData(offset=pos, data=content[pos : pos + 1024], crc32=zlib.crc32(content[pos : pos + 1024]))

    layer = Layer("sha256:" + hashlib.sha256(content).hexdigest(), len(content))
    path = tmp_path / "blob.partial"
    blob = GrowingBlob(layer.digest, layer.size, path)
    _ = [line async for line in receive_blob(layer, path, peer, growing=blob)]
    assert blob.crcs == {
        0: (1024, zlib.crc32(content[:1024])),
        1024: (2048, zlib.crc32(content[1024:2048])),
        2048: (3000, zlib.crc32(content[2048:])),
    }
    with path.open("r+b") as f:  # damaged on this host's disk after it was checked and written
        f.seek(1500)
        f.write(b"\xff")
    served = [c async for c in follow_chunks(blob, 0, 1024)]
    assert [zlib.crc32(c.data) == c.crc32 for c in served] == [True, False, True]  # the next host re-reads it
    assert [c.offset for c in served] == [0, 1024, 2048]
    followed = [c async for c in follow_chunks(blob, 512, 4096)]  # not on the writer's chunks: crc'd as read
    assert [(c.offset, zlib.crc32(c.data) == c.crc32) for c in followed] == [(512, True)]


async def test_registry_chunks_are_cut_where_peers_cut_them_and_checked_by_sha256_alone(tmp_path: Path) -> None:
    laid = write_ollama_model(tmp_path / "reg", MODEL, gguf_bytes(3 * MiB + 5, seed=6))
    registry = await RegistryStandIn(tmp_path / "reg").start()
    try:
        async with RegistrySource(registry.url) as source:
            await source.manifest(MODEL)
            chunks = [c async for c in source.read_blob(laid.weights_digest, 0, MiB)]
    finally:
        await registry.stop()
    assert [(c.offset, len(c.data), c.crc32) for c in chunks] == [
        (0, MiB, None),
        (MiB, MiB, None),
        (2 * MiB, MiB, None),
        (3 * MiB, 5, None),
    ]
    layer = Layer(laid.weights_digest, len(laid.weights))

    async def spoiled(digest: str, offset: int) -> Any:
        for c in chunks:
            yield Chunk(c.offset, b"\x00" * len(c.data)) if c.offset == MiB else c

    with pytest.raises(OlolError, match="sha256 mismatch"):
        _ = [line async for line in receive_blob(layer, tmp_path / "p", spoiled)]


def test_registry_names_resolve_as_ollama_resolves_them() -> None:
    assert registry_path("llama3") == ("https://registry.ollama.ai", "library/llama3:latest")
    assert registry_path("me/m:1b", "http://127.0.0.1:5") == ("http://127.0.0.1:5", "me/m:1b")
    assert registry_path("reg.example:5000/me/m:1b") == ("https://reg.example:5000", "me/m:1b")


async def test_registry_reads_resume_from_an_offset_even_without_range_support(tmp_path: Path) -> None:
    laid = write_ollama_model(tmp_path / "reg", MODEL, gguf_bytes(3 * MiB, seed=5), system="Be brief.")
    registry = await RegistryStandIn(tmp_path / "reg").start()  # ignores Range: sends the whole blob
    try:
        async with RegistrySource(registry.url) as source:
            manifest = await source.manifest(MODEL)
            assert manifest.system == "Be brief." and manifest.model_layer.digest == laid.weights_digest
            data = b"".join([c.data async for c in source.read_blob(laid.weights_digest, MiB + 7)])
            assert data == laid.weights[MiB + 7 :]
        with pytest.raises(OlolError, match="file does not exist"):
            async with RegistrySource(registry.url) as source:
                await source.manifest("absent:latest")
    finally:
        await registry.stop()


async def test_copies_run_behind_the_download_and_the_registry_is_read_once(nodes, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "slow-registry"
    write_ollama_model(root, MODEL, gguf_bytes(4 * MiB, seed=6))
    registry = await RegistryStandIn(root, rate=8e6).start()  # half a second for the weights
    try:
        hosts = await nodes(3, registry=registry)
        async with (
            proxy_over(*(h.target for h in hosts)) as proxy,
            aiohttp.ClientSession() as http,
            http.post(proxy.url + "/api/pull", json={"model": MODEL, "replicas": 3}) as resp,
        ):
            lines = [json.loads(raw) for raw in (await resp.read()).splitlines() if raw.strip()]
        final = lines[-1]
        assert final["status"] == "success", final
        seed = next(h for h, v in final["olol"]["via"].items() if v == "registry")
        layer = [line["olol"] for line in lines if "digest" in line]  # per-host figures of each layer line
        seed_done = next(i for i, p in enumerate(layer) if p["host"] == seed and p["completed"] == p["total"])
        copying = [p for p in layer[:seed_done] if p["host"] != seed and p["completed"] > 0]
        # Both other hosts had bytes of the weights before the seed had all of them.
        assert {p["host"] for p in copying} == {h.target for h in hosts} - {seed}
        assert 4 * MiB <= registry.bytes_served < 4.1 * MiB
        for host in hosts:
            assert (host.models_dir / "manifests/registry.ollama.ai/library/tiny-chat/latest").exists()
    finally:
        await registry.stop()


async def test_a_download_killed_midway_resumes_from_its_partial_file(nodes, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "reg"
    laid = write_ollama_model(root, MODEL, gguf_bytes(3 * MiB, seed=7))
    registry = await RegistryStandIn(root).start()
    try:
        (host,) = await nodes(1, registry=registry)
        staging = tmp_path / "host0" / "staging"  # as the nodes fixture lays it out
        staging.mkdir(parents=True, exist_ok=True)
        (staging / (blob_file_name(laid.weights_digest) + ".partial")).write_bytes(laid.weights[:MiB])
        async with TransferClient(host.target) as client:
            lines = [line async for line in client.download(MODEL)]
        assert lines[-1]["status"] == "success"
        assert any(line.get("resumed_from") == MiB for line in lines)
        assert (host.models_dir / "blobs" / blob_file_name(laid.weights_digest)).read_bytes() == laid.weights
        assert not list(staging.glob("*.partial"))
    finally:
        await registry.stop()
