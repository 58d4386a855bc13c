"""A llama.cpp host as Ollama runs one: every GGUF of a directory, each loaded on demand.

One supervised llama-server per loaded model (a `LlamaCppBackend` each), kept in a
`ModelPool` that loads on first use, unloads after `keep_alive`, and evicts the least
recently used idle model when a new one needs the memory (`olol.backends.model_pool`).
The memory a model needs before it is started is its file plus its KV cache for the
configured context; once started, what llama.cpp logged it allocated replaces that.

A model is named after its file's stem (`tiny.gguf` -> `tiny:latest`), the name a LAN
copy gives the file; the directory is read on every listing, since copies arrive at any time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil

from olol.backends.host_settings import HostSettings
from olol.backends.llamacpp import convert
from olol.backends.llamacpp.backend import LlamaCppBackend, supports_thinking
from olol.backends.llamacpp.bins import LlamaBinaryNotFound, find_llama_server
from olol.backends.llamacpp.gguf_header import read_gguf_header
from olol.backends.llamacpp.gguf_info import read_model_file
from olol.backends.llamacpp.models import ModelDir
from olol.backends.llamacpp.process import LlamaServerConfig, LlamaServerProcess
from olol.backends.model_pool import Loaded, ModelPool
from olol.cluster.backend import JSON, Backend, BackendInfo
from olol.errors import BackendUnavailable, BadRequest, ModelNotFound
from olol.wire.values import duration_from_json

__all__ = ["KV_TYPE_BYTES", "LlamaHostBackend"]

# Bytes per element of llama.cpp's KV cache types (block bytes / block size).
KV_TYPE_BYTES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q5_1": 24 / 32, "q5_0": 22 / 32,
                 "q4_1": 20 / 32, "q4_0": 18 / 32, "iq4_nl": 18 / 32}  # fmt: skip

_VERSION = re.compile(r"version:\s*(\S+)(?:\s*\((\w+)\))?")


class LlamaHostBackend(Backend):
    kind = "llamacpp"

    def __init__(
        self,
        template: LlamaServerConfig,
        *,
        models_dir: str | Path | None = None,
        model_name: str | None = None,
        settings: HostSettings | None = None,
        preload: bool = True,
    ) -> None:
        """Serve the GGUFs of `models_dir` (default: the directory of `template.model_path`) and
        `template.model_path` itself, as `model_name` if given. Each model's llama-server is
        `template` with its path; `settings` gives the default keep_alive and the memory cap.
        `preload` loads `template.model_path` at start (as `olol server --model` promises)."""
        self.settings = settings or HostSettings()
        self.template = template
        path = template.model_path
        # A directory as the template's path: serve what it holds, nothing in particular first.
        self._first = None if path.is_dir() else convert.normalize_model_name(model_name or path.stem)
        extra = {self._first: path} if self._first else {}
        self._dir = ModelDir(Path(models_dir) if models_dir else path if path.is_dir() else path.parent, extra)
        self._preload = preload
        self._pool: ModelPool[LlamaCppBackend] = ModelPool(
            self._runner, self._need, cap=self._cap, keep_alive_ns=self.settings.keep_alive_ns
        )
        self._version: str | None = None
        self._last: LlamaCppBackend | None = None  # the most recently used runner (`process`)

    # ------------------------------------------------------------------ the pool's runners
    def _runner(self, name: str, path: Path) -> LlamaCppBackend:
        config = dataclasses.replace(self.template, model_path=path, alias=name)
        return LlamaCppBackend(server=config, model_name=name)

    async def _need(self, name: str, path: Path) -> int:
        """Memory to reserve before starting `path`: weights plus KV cache for every slot's context."""
        kv_bytes = KV_TYPE_BYTES.get(self.template.kv_cache_type, 2.0)
        n_ctx = self.template.total_ctx

        def estimate() -> int:
            size = path.stat().st_size
            with contextlib.suppress(ValueError, OSError, KeyError, TypeError, ZeroDivisionError):
                fields = read_gguf_header(path).fields
                arch = str(fields["general.architecture"])
                layers = int(fields[f"{arch}.block_count"])
                width = int(fields[f"{arch}.embedding_length"])
                heads = int(fields[f"{arch}.attention.head_count"])
                kv_heads = int(fields.get(f"{arch}.attention.head_count_kv", heads))
                k_len = int(fields.get(f"{arch}.attention.key_length", width // heads))
                v_len = int(fields.get(f"{arch}.attention.value_length", k_len))
                # llama.cpp's KV cache: n_ctx x (K + V) x KV heads x bytes per element, per layer.
                return size + int(layers * n_ctx * (k_len + v_len) * kv_heads * kv_bytes)
            return size

        return await asyncio.to_thread(estimate)

    def _cap(self) -> int:
        """The cap: --max-memory, else what is free now plus what our own models hold."""
        if self.settings.max_memory is not None:
            return self.settings.max_memory
        return int(psutil.virtual_memory().available) + self._pool.used

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self._pool.reopen()
        try:
            find_llama_server(self.template.binary)
        except LlamaBinaryNotFound as exc:
            raise BackendUnavailable(str(exc)) from exc
        if self._preload and self._first is not None:
            async with self._pool.use(self._first, self.template.model_path):
                pass

    async def close(self) -> None:
        await self._pool.close()

    @property
    def process(self) -> LlamaServerProcess | None:
        """The llama-server of the model used last (None before any)."""
        return self._last.process if self._last is not None else None

    def loaded(self) -> list[Loaded[LlamaCppBackend]]:
        return self._pool.loaded()

    # ------------------------------------------------------------------ requests
    def _target(self, request: JSON) -> tuple[str, Path, int | None]:
        requested = request.get("model")
        if not requested or not isinstance(requested, str):
            raise BadRequest("model is required")
        name = convert.normalize_model_name(requested)
        path = self._dir.find(name)
        if path is None:
            raise ModelNotFound(requested)
        keep = request.get("keep_alive")
        return name, path, None if keep is None else duration_from_json(keep)

    @contextlib.asynccontextmanager
    async def _lease(self, request: JSON) -> AsyncIterator[tuple[LlamaCppBackend, int]]:
        name, path, keep = self._target(request)
        async with self._pool.use(name, path, keep) as lease:
            self._last = lease.runner
            if (process := lease.runner.process) is not None:
                total, _ = process.memory()
                if total:  # what it really holds, from llama.cpp's own log
                    lease.loaded.need = total
            yield lease.runner, lease.load_ns

    async def _unload_only(self, request: JSON, body: JSON) -> AsyncGenerator[JSON, None]:
        name, _, _ = self._target(request)
        await self._pool.unload(name)
        yield {"model": name, "created_at": convert.rfc3339(), **body, "done": True, "done_reason": "unload"}

    async def _stream(self, request: JSON, method: str, empty: str, body: JSON) -> AsyncGenerator[JSON, None]:
        if not request.get(empty) and request.get("keep_alive") in (0, "0", "0s"):
            # Ollama's "unload now": nothing is loaded for it.
            async for chunk in self._unload_only(request, body):
                yield chunk
            return
        async with self._lease(request) as (runner, load_ns):
            stream = getattr(runner, method)(request)
            async with contextlib.aclosing(stream):
                async for chunk in stream:
                    if chunk.get("done") and load_ns:
                        chunk = {
                            **chunk,
                            "load_duration": int(chunk.get("load_duration") or 0) + load_ns,
                            "total_duration": int(chunk.get("total_duration") or 0) + load_ns,
                        }
                    yield chunk

    def generate(self, request: JSON) -> AsyncIterator[JSON]:
        return self._stream(request, "generate", "prompt", {"response": ""})

    def chat(self, request: JSON) -> AsyncIterator[JSON]:
        return self._stream(request, "chat", "messages", {"message": {"role": "assistant", "content": ""}})

    async def embed(self, request: JSON) -> JSON:
        async with self._lease(request) as (runner, load_ns):
            result = await runner.embed(request)
        if load_ns:
            result = {
                **result,
                "load_duration": int(result.get("load_duration") or 0) + load_ns,
                "total_duration": int(result.get("total_duration") or 0) + load_ns,
            }
        return result

    # ------------------------------------------------------------------ models
    async def list_models(self) -> list[JSON]:
        entries = {e["name"]: e for e in await asyncio.to_thread(self._dir.entries, "")}
        for loaded in self._pool.loaded():
            if loaded.name in entries:  # the running server knows its digest (hashed once)
                entries[loaded.name] = await loaded.runner._entry()
        return list(entries.values())

    async def running(self) -> list[JSON]:
        out = []
        for loaded in self._pool.loaded():
            entry = await loaded.runner._entry()
            process = loaded.runner.process
            total, vram = process.memory() if process is not None else (0, 0)
            expires = loaded.expires_at
            out.append(
                {
                    **entry,
                    "size": total or loaded.need,
                    "size_vram": vram,
                    "expires_at": convert.far_future() if expires is None else _wall(expires),
                    "context_length": self.template.ctx_size,
                }
            )
        return out

    async def show(self, request: JSON) -> JSON:
        name, path, _ = self._target(request)
        loaded = self._pool.get(name)
        if loaded is not None and loaded.ready.is_set() and loaded.failed is None:
            return await loaded.runner.show(request)
        # Not loaded: Ollama answers from the model's files without loading it.
        file = await asyncio.to_thread(read_model_file, path, verbose=bool(request.get("verbose")))
        template = file.chat_template or ""
        capabilities = ["completion"]
        capabilities += ["embedding"] if self.template.embeddings else []
        capabilities += ["tools"] if "tools" in template else []
        capabilities += ["thinking"] if supports_thinking({"chat_template": template}) else []
        return {
            "modelfile": f"# Modelfile generated by olol (llama.cpp backend)\nFROM {path}\n",
            "parameters": "",
            "template": template,
            "details": file.details(),
            "model_info": file.model_info,
            "capabilities": capabilities,
            "modified_at": file.modified_at,
        }

    # ------------------------------------------------------------------ status
    async def _binary_version(self) -> str:
        if self._version is None:
            try:
                proc = await asyncio.create_subprocess_exec(
                    str(find_llama_server(self.template.binary)), "--version",
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                )  # fmt: skip
                out, _ = await asyncio.wait_for(proc.communicate(), 30)
            except (OSError, LlamaBinaryNotFound, TimeoutError):
                return ""
            match = _VERSION.search(out.decode(errors="replace"))
            # /props' build_info spelling: "b<number>-<commit>"
            self._version = f"b{match[1]}-{match[2]}" if match and match[2] else (match[1] if match else "")
        return self._version

    async def info(self) -> BackendInfo:
        loaded = self._pool.loaded()
        version = ""
        if loaded:
            version = (await loaded[0].runner.info()).version
        return BackendInfo(
            kind=self.kind,
            version=version or await self._binary_version(),
            url="",
            parallel=max(1, self.template.parallel),
            extra={
                "models_dir": str(self._dir.root),
                "loaded": [m.name for m in loaded],
                "n_ctx": self.template.ctx_size,
                "settings": self.settings.effective(),
            },
        )

    async def healthy(self) -> bool:
        try:
            find_llama_server(self.template.binary)
        except LlamaBinaryNotFound:
            return False
        return all([await m.runner.healthy() for m in self._pool.loaded()])


def _wall(monotonic_deadline: float) -> str:
    return convert.rfc3339(datetime.now(UTC) + timedelta(seconds=monotonic_deadline - time.monotonic()))
