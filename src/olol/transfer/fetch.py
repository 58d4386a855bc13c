"""One model copied from a peer agent into a sink, as a stream of Ollama-shaped progress lines.

The lines follow `/api/pull`'s order ("pulling manifest", one line per layer
step, "verifying sha256 digest", "writing manifest", "success") so a proxy can
merge copies and registry pulls into one feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Protocol

from olol.cluster.backend import JSON
from olol.transfer.blobs import BlobChunk, receive_blob
from olol.transfer.growing import Arrivals, GrowingBlob
from olol.transfer.install import ModelSink
from olol.transfer.manifest import Layer, ModelManifest, digest_hex

__all__ = ["BlobLocks", "ManifestSource", "fetch_model"]

log = logging.getLogger(__name__)



class ManifestSource(Protocol):
    """What a fetch reads from: the peer's manifest and blobs (a `TransferClient`, or a fake in tests)."""

    async def manifest(self, model: str) -> ModelManifest: ...

    def read_blob(self, digest: str, offset: int = 0, chunk_size: int = 0) -> AsyncGenerator[BlobChunk, None]: ...


class BlobLocks:
    """One lock per digest: two fetches of models sharing a blob copy it once."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def hold(self, digest: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(digest, asyncio.Lock())
        async with lock:
            yield


def _done(layer: Layer, verb: str) -> JSON:
    return {
        "status": f"{verb} {digest_hex(layer.digest)[:12]}",
        "digest": layer.digest,
        "total": layer.size,
        "completed": layer.size,
    }


async def fetch_model(
    source: ManifestSource,
    model: str,
    sink: ModelSink,
    *,
    name: str = "",
    locks: BlobLocks | None = None,
    stats: dict[str, int] | None = None,
    verb: str = "copying",
    on_manifest: Callable[[ModelManifest], None] | None = None,
    arrivals: Arrivals | None = None,
) -> AsyncIterator[JSON]:
    """Copy `model` from `source` into `sink`, installed as `name` (default: the source's name).

    With `arrivals`, the model and each blob are listed there while they arrive,
    so this host's peers can copy them from here before the copy is done.
    """
    locks = locks or BlobLocks()
    yield {"status": "pulling manifest"}
    manifest = await source.manifest(model)
    if on_manifest is not None:
        on_manifest(manifest)
    name = name or manifest.name
    with arrivals.receiving(manifest, model, name) if arrivals is not None else contextlib.nullcontext():
        async for line in _fetch_layers(source, manifest, sink, name, locks, stats, verb, arrivals):
            yield line
    log.info("copied %s (%d bytes) into %s", manifest.name, manifest.total_size, name)
    yield {"status": "success"}


async def _fetch_layers(
    source: ManifestSource,
    manifest: ModelManifest,
    sink: ModelSink,
    name: str,
    locks: BlobLocks,
    stats: dict[str, int] | None,
    verb: str,
    arrivals: Arrivals | None,
) -> AsyncIterator[JSON]:
    for layer in sink.layers(manifest):
        if await sink.has(layer, manifest, name):
            yield _done(layer, verb)
            continue
        async with locks.hold(layer.digest):
            if await sink.has(layer, manifest, name):  # another fetch installed it while we waited
                yield _done(layer, verb)
                continue
            partial = sink.partial_path(layer)
            # A fresh copy streams into the sink as it arrives; a resumed one is installed from the file.
            upload = None if partial.exists() else sink.streaming(layer)
            growing = GrowingBlob(layer.digest, layer.size, partial)
            with arrivals.growing(growing) if arrivals is not None else contextlib.nullcontext():
                try:
                    async for line in receive_blob(
                        layer,
                        partial,
                        source.read_blob,
                        verb=verb,
                        stats=stats,
                        on_chunk=upload.send if upload is not None else None,
                        growing=growing,
                    ):
                        yield line
                except BaseException:
                    if upload is not None:
                        await upload.abort()
                    raise
                # Installed while still holding the lock, so no other fetch starts on a partial being moved.
                if upload is not None and await upload.complete():
                    partial.unlink(missing_ok=True)
                else:
                    await sink.put(layer, partial, manifest, name)
    yield {"status": "verifying sha256 digest"}
    yield {"status": "writing manifest"}
    await sink.finish(manifest, name)
