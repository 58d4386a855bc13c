"""The GGUF files a supervised llama-server can be switched to, and the switch itself.

A llama-server serves one model. A llama.cpp host's model directory may hold
more (a LAN copy drops new files there while the agent runs), so the backend
lists every GGUF in it and, when a request names one that is not loaded,
restarts its llama-server on that file: the request waits for the switch, the
requests still running on the old model finish first, and requests for the
loaded model do not wait for anything else. A model is named after its file's
stem (`tiny.gguf` -> `tiny:latest`), the name a LAN copy gives the file.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from olol.backends.llamacpp import convert
from olol.backends.llamacpp.gguf_info import ModelFile, read_model_file
from olol.cluster.backend import JSON
from olol.errors import ModelNotFound

__all__ = ["ModelDir", "ModelSwitch"]


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


class ModelSwitch:
    """Who is using the loaded model, and one switch to another model at a time.

    `use(name)` is held for the whole of a request; `load` (the backend's
    restart onto a file) runs only when no request holds the old model.
    """

    def __init__(self, current: Callable[[], Awaitable[str]], load: Callable[[Path], Awaitable[None]]) -> None:
        self._current = current
        self._load = load
        self._users = 0
        self._switching = False
        self._cond = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def use(self, name: str, path: Path | None) -> AsyncIterator[None]:
        """Hold the loaded model for one request; first switch to `path` if `name` is not the loaded model.

        Raises ModelNotFound if `name` is neither loaded nor has a file (`path` None).
        """
        await self._enter(convert.normalize_model_name(name), path)
        try:
            yield
        finally:
            async with self._cond:
                self._users -= 1
                self._cond.notify_all()

    async def _enter(self, name: str, path: Path | None) -> None:
        async with self._cond:
            while True:
                await self._cond.wait_for(lambda: not self._switching)
                if await self._current() == name:
                    self._users += 1
                    return
                if path is None:
                    raise ModelNotFound(name)
                self._switching = True
                try:
                    await self._cond.wait_for(lambda: self._users == 0)  # requests on the old model finish first
                    await self._load(path)
                finally:
                    self._switching = False
                    self._cond.notify_all()
