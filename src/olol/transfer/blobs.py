"""Moving one blob: served in checked chunks from any offset, received resumably and verified.

Integrity is checked twice, for two different failures: every chunk from a
peer carries a crc32, so a chunk damaged on the way is re-read from its offset
instead of failing a multi-GB copy at the end; the whole blob must hash to its
sha256 digest, end to end, before anything installs it. Each byte is crc'd once
per host: the receiver's check yields the crc that it hands on with the chunk
when peers copy the blob from it while it arrives (`olol.transfer.growing`). A partial file survives an
interrupted copy (agent killed, source gone, network down): the next fetch
re-hashes what is there and asks the source only for the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
import zlib
from dataclasses import dataclass

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: one process per staging directory
    fcntl = None  # type: ignore[assignment]
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from olol.cluster.backend import JSON
from olol.errors import BadRequest, OlolError
from olol.proto import models_pb as pb
from olol.transfer.growing import GrowingBlob
from olol.transfer.manifest import Layer, digest_hex
from olol.transfer.throttle import DEFAULT_CHUNK, MAX_CHUNK, BandwidthLimiter

__all__ = [
    "BlobChunk",
    "Chunk",
    "ChunkSource",
    "CorruptChunk",
    "read_chunks",
    "receive_blob",
]

log = logging.getLogger(__name__)

# 1 MiB: large enough that per-message overhead (protobuf, HTTP/2 framing, the
# threaded server's hop into the event loop) stays small, small enough that a
# corrupt chunk costs little to re-read.
_PROGRESS_EVERY = 0.1  # seconds between progress lines per blob
_MAX_BAD_CHUNKS = 5
_LOCK_POLL = 0.2



class BlobChunk(Protocol):
    """What `receive_blob` reads from a source: a peer's `pb.BlobData`, or a `Chunk`."""

    @property
    def offset(self) -> int: ...

    @property
    def data(self) -> bytes: ...

    @property
    def crc32(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Chunk:
    """A chunk read straight off a connection that checks itself (HTTP from a registry).

    `crc32` is None: a crc computed from the bytes just received would only be
    compared with itself; the blob's sha256 covers them end to end.
    """

    offset: int
    data: bytes
    crc32: int | None = None


ChunkSource = Callable[[str, int], AsyncGenerator[BlobChunk, None]]  # (digest, offset) -> chunks


class CorruptChunk(OlolError):
    status = 502


def _read_at(fd: int, size: int, offset: int) -> tuple[bytes, int]:
    data = os.pread(fd, size, offset)
    return data, zlib.crc32(data)


async def read_chunks(
    path: Path, offset: int, chunk_size: int = 0, rate: BandwidthLimiter | None = None
) -> AsyncIterator[pb.BlobData]:
    """The blob at `path` from `offset` on, in order; one empty message for an empty blob."""
    size = min(chunk_size or DEFAULT_CHUNK, MAX_CHUNK)
    fd = os.open(path, os.O_RDONLY)
    try:
        total = os.fstat(fd).st_size
        if offset < 0 or offset > total:
            raise BadRequest(f"offset {offset} is outside the blob ({total} bytes)")
        if total == 0:
            yield pb.BlobData(offset=0, data=b"", crc32=0, total=0)
            return
        pos = offset
        while pos < total:
            data, crc = await asyncio.to_thread(_read_at, fd, min(size, total - pos), pos)
            if not data:
                raise OlolError(f"{path} shrank while it was being read")
            if rate is not None:
                await rate.take(len(data))
            yield pb.BlobData(offset=pos, data=data, crc32=crc, total=total)
            pos += len(data)
    finally:
        os.close(fd)


def _hash_prefix(path: Path, length: int) -> Any:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        left = length
        while left > 0:
            block = f.read(min(4 << 20, left))
            if not block:
                break
            sha.update(block)
            left -= len(block)
    return sha


def _check_and_write(out: BinaryIO, sha: Any, data: bytes, crc: int | None) -> int | None:
    # One hop to a worker thread for all three: zlib and hashlib release the GIL on big buffers,
    # so the event loop keeps serving the network while a chunk is checked, written and hashed.
    # The crc is computed even when there is none to check: peers following this file get it.
    actual = zlib.crc32(data)
    if crc is not None and actual != crc:
        return None
    out.write(data)
    out.flush()  # peers may be reading this file as it grows (olol.transfer.growing)
    sha.update(data)
    return actual


def _progress(layer: Layer, verb: str, completed: int, resumed: int) -> JSON:
    line: JSON = {
        "status": f"{verb} {digest_hex(layer.digest)[:12]}",
        "digest": layer.digest,
        "total": layer.size,
        "completed": completed,
    }
    if resumed:
        line["resumed_from"] = resumed
    return line


async def _open_locked(path: Path) -> BinaryIO:
    """The partial file, opened without truncating it and locked against other processes copying the same blob.

    Two agents on one machine may share a staging directory: the second waits
    for the first (polling, so a cancelled fetch never leaves a thread holding
    a lock), then resumes from whatever the first left.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except (BlockingIOError, FileNotFoundError):
            same = False
        if same:
            return os.fdopen(fd, "r+b")
        os.close(fd)  # locked elsewhere, or moved away by the process that held it: look again
        await asyncio.sleep(_LOCK_POLL)


class _Sink:
    """The partial file being written, its running sha256 and how far it got."""

    def __init__(self, out: BinaryIO, sha: Any, have: int) -> None:
        self.out, self.sha, self.have = out, sha, have

    async def write(self, data: bytes, crc: int | None) -> int | None:
        """Append a chunk that passes its crc32 (if it has one); its crc32, or None if it failed (nothing written)."""
        actual = await asyncio.to_thread(_check_and_write, self.out, self.sha, data, crc)
        if actual is not None:
            self.have += len(data)
        return actual


async def receive_blob(
    layer: Layer,
    partial: Path,
    source: ChunkSource,
    *,
    verb: str = "copying",
    stats: dict[str, int] | None = None,
    on_chunk: Callable[[bytes], Awaitable[None]] | None = None,
    growing: GrowingBlob | None = None,
) -> AsyncIterator[JSON]:
    """Fetch `layer` into `partial` (resuming what is there), yielding progress; verified on return.

    `on_chunk` sees every chunk after it is written (a streaming install);
    `growing` is told how far the file got and how the blob ended, for peers
    reading it while it arrives.
    Raises OlolError on a sha256 mismatch (the partial file is deleted: its
    content is wrong, resuming it would only repeat the mismatch) and lets
    transport errors through with the partial file kept for the next try.
    """
    hexdigest = digest_hex(layer.digest)
    partial.parent.mkdir(parents=True, exist_ok=True)
    with await _open_locked(partial) as out:
        have = os.fstat(out.fileno()).st_size
        if have > layer.size:
            have = 0  # not a prefix of this blob
        sha = await asyncio.to_thread(_hash_prefix, partial, have) if have else hashlib.sha256()
        resumed = have
        if resumed:
            log.info("resuming %s at %d of %d bytes", layer.digest, have, layer.size)
        yield _progress(layer, verb, have, resumed)
        bad = 0
        last = time.monotonic()
        out.seek(have)
        out.truncate()
        sink = _Sink(out, sha, have)
        if growing is not None:
            growing.grew(have)
        while sink.have < layer.size:
            try:
                async with contextlib.aclosing(source(layer.digest, sink.have)) as chunks:
                    async for chunk in chunks:
                        data = chunk.data  # once: each read of a protobuf bytes field is a copy
                        if not data:
                            break
                        crc = await sink.write(data, chunk.crc32) if chunk.offset == sink.have else None
                        if crc is None:
                            raise CorruptChunk(f"chunk at {chunk.offset} of {layer.digest} failed its check")
                        if growing is not None:
                            growing.grew(sink.have, crc)
                        if on_chunk is not None:
                            await on_chunk(data)
                        if stats is not None:
                            stats["bytes_received"] = stats.get("bytes_received", 0) + len(data)
                        now = time.monotonic()
                        if now - last >= _PROGRESS_EVERY or sink.have >= layer.size:
                            last = now
                            yield _progress(layer, verb, sink.have, resumed)
                        if sink.have >= layer.size:
                            break
            except CorruptChunk as exc:
                bad += 1
                if bad > _MAX_BAD_CHUNKS:
                    raise
                log.warning("%s; re-reading from offset %d", exc.message, sink.have)
                continue
            if sink.have < layer.size:
                raise OlolError(f"source ended {layer.digest} at {sink.have} of {layer.size} bytes", status=502)
        if sha.hexdigest() != hexdigest:
            partial.unlink(missing_ok=True)
            raise OlolError(f"sha256 mismatch for {layer.digest}: got sha256:{sha.hexdigest()}", status=502)
        if growing is not None:
            growing.finish()
