"""Model stores an agent can hand models out of: Ollama's models directory, or a directory of GGUF files.

Ollama has no API to read a blob back, so a source agent reads its backend's
files directly (read-only). Layout of an Ollama models directory:

    manifests/<registry>/<namespace>/<model>/<tag>   JSON: config + layers
    blobs/sha256-<hex>                                every layer, by digest

Everything here is blocking file I/O; the agent calls it in a worker thread.
A peer names what it wants by digest only (64 hex digits), and only files in
the store's `blobs/` directory or its GGUF files are served, so no crafted
name reaches any other path.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from olol.cluster import normalize
from olol.errors import ModelNotFound, OlolError
from olol.transfer.manifest import MODEL, Layer, ModelManifest, blob_file_name, digest_hex, ollama_manifest
from olol.transfer.paths import default_ollama_models

__all__ = ["BlobNotFound", "GgufDir", "InventoryItem", "ModelStore", "OllamaModelsDir", "default_ollama_models"]

_DEFAULT_REGISTRY = "registry.ollama.ai"


class BlobNotFound(OlolError):
    status = 404


@dataclass(frozen=True)
class InventoryItem:
    name: str
    format: str
    size: int
    digest: str = ""


def sha256_of(path: Path, chunk: int = 4 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return "sha256:" + h.hexdigest()


class ModelStore(ABC):
    kind: str = ""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @abstractmethod
    def inventory(self) -> list[InventoryItem]: ...

    @abstractmethod
    def manifest(self, model: str) -> ModelManifest:
        """Raises ModelNotFound."""

    @abstractmethod
    def blob_path(self, digest: str) -> Path:
        """The file holding `digest`; raises BlobNotFound unless this store has it."""

    def disk_free(self) -> int:
        try:
            return shutil.disk_usage(self.root if self.root.exists() else self.root.parent).free
        except OSError:
            return -1


class OllamaModelsDir(ModelStore):
    kind = "ollama"

    def _manifest_files(self) -> dict[str, Path]:
        """Normalised model name -> manifest file (walked on every call: Ollama adds models behind our back)."""
        base = self.root / "manifests"
        found: dict[str, Path] = {}
        if not base.is_dir():
            return found
        for path in base.glob("*/*/*/*"):
            if not path.is_file():
                continue
            registry, namespace, model, tag = path.relative_to(base).parts
            if registry == _DEFAULT_REGISTRY:
                name = f"{model}:{tag}" if namespace == "library" else f"{namespace}/{model}:{tag}"
            else:
                name = f"{registry}/{namespace}/{model}:{tag}"
            found[normalize(name)] = path
        return found

    def inventory(self) -> list[InventoryItem]:
        items = []
        for name, path in sorted(self._manifest_files().items()):
            try:
                raw = path.read_bytes()
                layers = json.loads(raw).get("layers") or []
            except (OSError, ValueError):
                continue  # half-written by Ollama right now: next time
            size = sum(int(la.get("size") or 0) for la in layers)
            items.append(InventoryItem(name, self.kind, size, "sha256:" + hashlib.sha256(raw).hexdigest()))
        return items

    def _text(self, digest: str) -> str:
        try:
            return (self.root / "blobs" / blob_file_name(digest)).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return ""

    def manifest(self, model: str) -> ModelManifest:
        path = self._manifest_files().get(normalize(model))
        if path is None:
            raise ModelNotFound(model)
        raw = path.read_bytes()
        try:
            doc: dict[str, Any] = json.loads(raw)
        except ValueError as exc:
            raise OlolError(f"unreadable manifest {path}: {exc}") from exc
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        return ollama_manifest(doc, normalize(model), digest, self._text)

    def blob_path(self, digest: str) -> Path:
        path = self.root / "blobs" / blob_file_name(digest)
        if not path.is_file():
            raise BlobNotFound(f"blob {digest} not found in {self.root}")
        return path


class GgufDir(ModelStore):
    """A llama.cpp host's directory of GGUF files: one file is one model, named after its stem."""

    kind = "gguf"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        # (size, mtime) -> digest per file: hashing a multi-GB file is done once, not per request.
        self._digests: dict[Path, tuple[int, int, str]] = {}
        self._lock = threading.Lock()

    def _files(self) -> dict[str, Path]:
        if not self.root.is_dir():
            return {}
        return {normalize(p.stem): p for p in sorted(self.root.glob("*.gguf")) if p.is_file()}

    def digest_of(self, path: Path) -> str:
        st = path.stat()
        with self._lock:
            cached = self._digests.get(path)
        if cached is not None and cached[:2] == (st.st_size, st.st_mtime_ns):
            return cached[2]
        digest = sha256_of(path)
        with self._lock:
            self._digests[path] = (st.st_size, st.st_mtime_ns, digest)
        return digest

    def remember(self, path: Path, digest: str) -> None:
        """Record a digest already verified (a file this agent just received), sparing a re-hash."""
        st = path.stat()
        with self._lock:
            self._digests[path] = (st.st_size, st.st_mtime_ns, digest)

    def inventory(self) -> list[InventoryItem]:
        items = []
        for name, path in self._files().items():
            with self._lock:
                cached = self._digests.get(path)
            items.append(InventoryItem(name, self.kind, path.stat().st_size, cached[2] if cached else ""))
        return items

    def manifest(self, model: str) -> ModelManifest:
        path = self._files().get(normalize(model))
        if path is None:
            raise ModelNotFound(model)
        digest = self.digest_of(path)
        layer = Layer(digest, path.stat().st_size, MODEL, path.name)
        return ModelManifest(name=normalize(model), format=self.kind, layers=[layer], digest=digest)

    def blob_path(self, digest: str) -> Path:
        wanted = "sha256:" + digest_hex(digest)
        for path in self._files().values():
            if self.digest_of(path) == wanted:
                return path
        raise BlobNotFound(f"no GGUF file with digest {digest} in {self.root}")
