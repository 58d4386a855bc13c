"""The GGUF files of a llama.cpp host's model directory, by Ollama name.

A LAN copy drops new files there while the agent runs, so the directory is read
on every call; `olol.backends.llamacpp.host` loads any of them on demand. A model
is named after its file's stem (`tiny.gguf` -> `tiny:latest`), the name a LAN
copy gives the file.
"""

from __future__ import annotations

from pathlib import Path

from olol.backends.llamacpp import convert
from olol.backends.llamacpp.gguf_info import ModelFile, read_model_file
from olol.cluster.backend import JSON

__all__ = ["ModelDir"]


class ModelDir:
    """The `*.gguf` files of one directory, by Ollama name; read on every call (files arrive at any time)."""

    def __init__(self, root: Path, extra: dict[str, Path] | None = None) -> None:
        self.root = root
        self.extra = extra or {}  # models outside the directory (the one the agent was started on)
        self._files: dict[Path, tuple[int, int, ModelFile]] = {}  # header parsed once per (size, mtime)

    def files(self) -> dict[str, Path]:
        found = {convert.normalize_model_name(n): p for n, p in self.extra.items() if p.is_file()}
        if self.root.is_dir():
            found |= {convert.normalize_model_name(p.stem): p for p in sorted(self.root.glob("*.gguf")) if p.is_file()}
        return found

    def find(self, name: str) -> Path | None:
        return self.files().get(convert.normalize_model_name(name))

    def describe(self, path: Path) -> ModelFile | None:
        """The file's GGUF header, or None for a file that is not (yet) a readable GGUF."""
        try:
            st = path.stat()
            cached = self._files.get(path)
            if cached is not None and cached[:2] == (st.st_size, st.st_mtime_ns):
                return cached[2]
            file = read_model_file(path)
        except (OSError, ValueError):
            return None
        self._files[path] = (st.st_size, st.st_mtime_ns, file)
        return file

    def entries(self, skip: str) -> list[JSON]:
        """`/api/tags` entries for every model here but `skip` (the loaded one, listed by the backend)."""
        out = []
        for name, path in self.files().items():
            if name == skip or (file := self.describe(path)) is None:
                continue
            out.append(
                {
                    "name": name,
                    "model": name,
                    "modified_at": file.modified_at,
                    "size": file.size,
                    "digest": "",  # hashing multi-GB files for a listing is not worth it; LAN copies hash on demand
                    "details": file.details(),
                }
            )
        return out
