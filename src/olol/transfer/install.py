"""Where a received model goes: into an Ollama (through its API) or into a directory of GGUF files.

Ollama owns its models directory, so the receiving side never writes there: it
uploads each verified blob through `/api/blobs/:digest` and rebuilds the model
with `/api/create` (original template, system prompt, parameters). A llama.cpp
host's model directory is plain files, so a GGUF is renamed into place
atomically from a partial file in the same directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from pathlib import Path

from olol.cluster.backend import Backend
from olol.errors import OlolError
from olol.lifecycle import close_stream
from olol.transfer.manifest import Layer, ModelManifest, blob_file_name, gguf_file_name
from olol.transfer.stores import GgufDir

__all__ = ["GgufSink", "ModelSink", "OllamaSink", "StreamingUpload"]

_UPLOAD_CHUNK = 4 << 20
_UPLOAD_QUEUE = 16  # chunks in flight between the network and Ollama: bounded, so a slow Ollama slows the copy


class ModelSink(ABC):
    #: Where partial files of interrupted copies wait to be resumed.
    staging: Path

    def layers(self, manifest: ModelManifest) -> list[Layer]:
        """The layers this sink needs (a GGUF directory takes only the weights)."""
        return list(manifest.layers)

    def partial_path(self, layer: Layer) -> Path:
        return self.staging / (blob_file_name(layer.digest) + ".partial")

    @abstractmethod
    async def has(self, layer: Layer, manifest: ModelManifest, name: str) -> bool: ...

    @abstractmethod
    async def put(self, layer: Layer, path: Path, manifest: ModelManifest, name: str) -> None:
        """Install the verified file at `path` (which the sink then owns)."""

    @abstractmethod
    async def finish(self, manifest: ModelManifest, name: str) -> str:
        """Make the model usable under `name`; returns where it now is, for the report."""

    def streaming(self, layer: Layer) -> StreamingUpload | None:
        """An upload fed chunk by chunk while the copy arrives, or None if this sink only takes whole files."""
        return None


class StreamingUpload:
    """A blob uploaded to Ollama while it is still arriving, so installing costs no second pass.

    The partial file is still written (a copy interrupted mid-way resumes from
    it); only a copy that ran start to end in one go is installed this way.
    """

    def __init__(self, backend: Backend, digest: str) -> None:
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(_UPLOAD_QUEUE)
        self._task = asyncio.create_task(backend.push_blob(digest, self._chunks()))

    async def _chunks(self) -> AsyncIterator[bytes]:
        while (chunk := await self._queue.get()) is not None:
            yield chunk

    async def send(self, data: bytes) -> None:
        if not self._task.done():  # Ollama may answer early (it already has the blob) and read no more
            await self._queue.put(data)

    async def complete(self) -> bool:
        """True once Ollama has the whole blob (it checks the digest too); False: upload the file instead."""
        if not self._task.done():
            await self._queue.put(None)
        try:
            await self._task
        except OlolError:
            return False
        return True

    async def abort(self) -> None:
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with open(path, "rb") as src:
        while chunk := await asyncio.to_thread(src.read, _UPLOAD_CHUNK):
            yield chunk


class OllamaSink(ModelSink):
    def __init__(self, backend: Backend, staging: Path) -> None:
        self.backend = backend
        self.staging = staging

    async def has(self, layer: Layer, manifest: ModelManifest, name: str) -> bool:
        return await self.backend.has_blob(layer.digest)

    async def put(self, layer: Layer, path: Path, manifest: ModelManifest, name: str) -> None:
        # Ollama hashes the upload itself and refuses a mismatch: a second, independent check.
        await self.backend.push_blob(layer.digest, _file_chunks(path))
        with contextlib.suppress(OSError):
            path.unlink()

    def streaming(self, layer: Layer) -> StreamingUpload | None:
        return StreamingUpload(self.backend, layer.digest)

    async def finish(self, manifest: ModelManifest, name: str) -> str:
        stream = self.backend.create({**manifest.create_request(name), "stream": True})
        try:
            last = ""
            async for line in stream:
                if "error" in line:
                    raise OlolError(f"creating {name}: {line['error']}")
                last = str(line.get("status", ""))
            if last != "success":
                raise OlolError(f"creating {name} ended without success (last status {last!r})")
        finally:
            await close_stream(stream)
        return name


class GgufSink(ModelSink):
    def __init__(self, store: GgufDir) -> None:
        self.store = store
        # Same filesystem as the destination, so installing is an atomic rename.
        self.staging = store.root / ".olol-partial"

    def layers(self, manifest: ModelManifest) -> list[Layer]:
        return [manifest.model_layer]

    def target(self, layer: Layer, name: str) -> Path:
        file_name = layer.file_name if layer.file_name.endswith(".gguf") else gguf_file_name(name)
        return self.store.root / Path(file_name).name  # never a path a peer chose

    async def has(self, layer: Layer, manifest: ModelManifest, name: str) -> bool:
        target = self.target(layer, name)
        if not target.is_file():
            return False
        digest = await asyncio.to_thread(self.store.digest_of, target)
        if digest != layer.digest:
            raise OlolError(f"{target} exists with other content ({digest}); not overwriting it", status=409)
        return True

    async def put(self, layer: Layer, path: Path, manifest: ModelManifest, name: str) -> None:
        target = self.target(layer, name)
        os.replace(path, target)
        self.store.remember(target, layer.digest)

    async def finish(self, manifest: ModelManifest, name: str) -> str:
        return str(self.target(manifest.model_layer, name))
