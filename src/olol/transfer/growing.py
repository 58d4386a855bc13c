"""Blobs this agent is still receiving, served to peers while they arrive.

A host that downloads a model (from the registry or from another host) is a
source before it has finished: a peer that asks for a blob still arriving gets
the bytes already written (each chunk passed its crc32 on the way in), then
follows the file as it grows, and gets the last chunk only once the whole blob
has hashed to its sha256 digest here. So placing a model on N hosts costs about
one download, not one download and then N-1 copies: the copies run behind it.
The receiving side still hashes everything itself; following a source that
later fails its own check ends the copy with that error.

Each chunk is served with the crc32 the writer computed when it checked and
wrote it, so a blob copied to N peers is crc'd once here, not once per peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from olol.cluster import normalize
from olol.errors import OlolError
from olol.proto import models_pb as pb
from olol.transfer.manifest import ModelManifest, digest_hex
from olol.transfer.throttle import DEFAULT_CHUNK, MAX_CHUNK, BandwidthLimiter

__all__ = ["Arrivals", "GrowingBlob", "follow_chunks"]


class GrowingBlob:
    """One blob being written to `path`: how much of it is there, and how it ended.

    The writer calls `grew` after each verified chunk and `finish` once (with
    the error, if any); readers wait in `wait_beyond`. Everything runs on the
    agent's one event loop.
    """

    def __init__(self, digest: str, size: int, path: Path) -> None:
        self.digest, self.size, self.path = digest, size, path
        self.have = 0
        self.opened = False  # the writer has the file open: readers may open it too
        self.verified = False
        self.error: str | None = None
        self.crcs: dict[int, tuple[int, int]] = {}  # chunk start -> (end, crc32), as written
        self._changed = asyncio.Event()

    @property
    def finished(self) -> bool:
        return self.verified or self.error is not None

    def grew(self, have: int, crc: int | None = None) -> None:
        """`have` bytes are written now; `crc` is the crc32 of those since the last call, if known."""
        if crc is not None and have > self.have:
            self.crcs[self.have] = (have, crc)
        self.have, self.opened = have, True
        self._wake()

    def finish(self, error: str | None = None) -> None:
        if self.finished:
            return
        if error is None and self.have >= self.size:
            self.verified = True
        else:
            self.error = error or f"the download of {self.digest} stopped at {self.have} of {self.size} bytes"
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_beyond(self, offset: int) -> None:
        """Until more than `offset` bytes may be served, or the blob has finished either way."""
        while not self.finished and (not self.opened or self.servable() <= offset):
            await self._changed.wait()

    def servable(self) -> int:
        """Bytes a reader may have: all of a verified blob, else all but the end (held back until verified)."""
        return self.size if self.verified else min(self.have, self.size - 1)


@dataclass
class Arrivals:
    """What this agent is receiving right now: manifests by model name, blobs by digest."""

    manifests: dict[str, ModelManifest] = field(default_factory=dict)
    blobs: dict[str, GrowingBlob] = field(default_factory=dict)

    def manifest(self, model: str) -> ModelManifest | None:
        return self.manifests.get(normalize(model))

    def blob(self, digest: str) -> GrowingBlob | None:
        return self.blobs.get(digest_hex(digest))

    @contextlib.contextmanager
    def receiving(self, manifest: ModelManifest, *names: str) -> Iterator[None]:
        keys = {normalize(n) for n in (manifest.name, *names) if n}
        for key in keys:
            self.manifests[key] = manifest
        try:
            yield
        finally:
            for key in keys:
                if self.manifests.get(key) is manifest:
                    del self.manifests[key]

    @contextlib.contextmanager
    def growing(self, blob: GrowingBlob) -> Iterator[GrowingBlob]:
        key = digest_hex(blob.digest)
        self.blobs[key] = blob
        try:
            yield blob
        except BaseException as exc:
            blob.finish(exc.message if isinstance(exc, OlolError) else f"{type(exc).__name__}: {exc}")
            raise
        finally:
            blob.finish()  # no-op after a verified or failed end; else: stopped short
            if self.blobs.get(key) is blob:
                del self.blobs[key]


def _read_at(fd: int, size: int, offset: int, crc: int | None) -> tuple[bytes, int]:
    data = os.pread(fd, size, offset)
    return data, crc if crc is not None and len(data) == size else zlib.crc32(data)


async def follow_chunks(
    blob: GrowingBlob, offset: int, chunk_size: int = 0, rate: BandwidthLimiter | None = None
) -> AsyncIterator[pb.BlobData]:
    """`blob` from `offset` on, waiting for bytes not written yet; ends at its size once it is verified.

    The file is opened once, at the start: the writer may move it into place or
    hand it to Ollama and delete it when done, and an open file stays readable.
    """
    size = min(chunk_size or DEFAULT_CHUNK, MAX_CHUNK)
    if offset < 0 or offset > blob.size:
        raise OlolError(f"offset {offset} is outside the blob ({blob.size} bytes)", status=400)
    await blob.wait_beyond(-1)  # the writer has created the file
    if blob.error is not None:
        raise OlolError(f"source could not complete {blob.digest}: {blob.error}", status=502)
    fd = os.open(blob.path, os.O_RDONLY)
    try:
        pos = offset
        while pos < blob.size:
            await blob.wait_beyond(pos)
            if blob.error is not None:
                raise OlolError(f"source could not complete {blob.digest}: {blob.error}", status=502)
            end = blob.servable()
            while pos < end:
                # The writer's own chunk where one starts here and fits: its crc is known already.
                stop, crc = blob.crcs.get(pos, (0, None))
                if crc is None or stop > end or stop - pos > size:
                    stop, crc = min(pos + size, end), None
                data, crc = await asyncio.to_thread(_read_at, fd, stop - pos, pos, crc)
                if not data:
                    raise OlolError(f"{blob.path} is shorter than the {end} bytes written to it", status=502)
                if rate is not None:
                    await rate.take(len(data))
                yield pb.BlobData(offset=pos, data=data, crc32=crc, total=blob.size)
                pos += len(data)
    finally:
        os.close(fd)
