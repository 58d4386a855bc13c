"""What a host says about itself: `/`, `/api/version`, `/api/tags`, `/api/ps`, `/api/show`."""

from __future__ import annotations

import time

from aiohttp import web

from tests.support.ollama_sim._catalogue import _FILE_TYPES, _param_count
from tests.support.ollama_sim._errors import SimError
from tests.support.ollama_sim._gotime import _FOREVER_NS, _rfc3339
from tests.support.ollama_sim._modelfile import _modelfile, _parameters_text
from tests.support.ollama_sim._names import _key, _valid_name
from tests.support.ollama_sim._request import _field
from tests.support.ollama_sim._scheduler import _Scheduler
from tests.support.ollama_sim._text import _VOCAB
from tests.support.ollama_sim._wire import JSON, _json


class _StatusRoutes(_Scheduler):
    """Read-only endpoints over the local models and the loaded runners."""

    async def _root(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="Ollama is running")

    async def _version(self, request: web.Request) -> web.StreamResponse:
        return _json({"version": self.version})

    async def _tags(self, request: web.Request) -> web.StreamResponse:
        specs = sorted(self.models.values(), key=lambda s: -s.modified_at_ns)  # newest first, as Ollama
        return _json(
            {
                "models": [
                    {
                        "name": s.name,
                        "model": s.name,
                        "modified_at": _rfc3339(s.modified_at_ns),
                        "size": s.size,
                        "digest": s.digest,
                        "details": s.details(),
                    }
                    for s in specs
                ]
            }
        )

    async def _ps(self, request: web.Request) -> web.StreamResponse:
        self._expire()
        now = time.time_ns()
        runners = sorted(
            self._loaded.values(), key=lambda r: -(r.expires_ns if r.expires_ns is not None else _FOREVER_NS)
        )
        return _json(
            {
                "models": [
                    {
                        "name": r.spec.name,
                        "model": r.spec.name,
                        "size": r.spec.size,
                        "digest": r.spec.digest,
                        "details": r.spec.details(),
                        "expires_at": _rfc3339(r.expires_ns if r.expires_ns is not None else now + _FOREVER_NS),
                        "size_vram": r.spec.size,
                        "context_length": r.num_ctx,
                    }
                    for r in runners
                ]
            }
        )

    async def _show(self, request: web.Request) -> web.StreamResponse:
        w = "ShowRequest"
        body = await self._read_json(request, w)
        name = _field(body, "model", str, w, "string") or _field(body, "name", str, w, "string") or ""
        if not name:
            raise SimError(400, "model is required")
        spec = self.models.get(_key(name)) if _valid_name(name) else None
        if spec is None:
            raise SimError(404, f"model '{name}' not found")
        verbose = bool(body.get("verbose"))
        params = _param_count(spec.parameter_size)
        arch = spec.family
        model_info: JSON = {
            "general.architecture": arch,
            "general.basename": spec.name.rsplit("/", 1)[-1].split(":")[0],
            "general.file_type": _FILE_TYPES.get(spec.quantization_level, 15),
            "general.parameter_count": int(params),
            "general.quantization_version": 2,
            f"{arch}.context_length": spec.context_length,
            f"{arch}.embedding_length": spec.embedding_dim,
            f"{arch}.block_count": 12 if spec.supports("embedding") else 28,
            f"{arch}.attention.head_count": 12 if spec.supports("embedding") else 24,
            "tokenizer.ggml.model": "bert" if spec.supports("embedding") else "gpt2",
            # Ollama elides the big tokenizer arrays unless asked for them.
            "tokenizer.ggml.tokens": list(_VOCAB) if verbose else None,
        }
        out: JSON = {
            "license": spec.license,
            "modelfile": _modelfile(spec),
            "parameters": _parameters_text(spec.parameters),
            "template": spec.template,
            "details": spec.details(),
            "model_info": model_info,
            "capabilities": list(spec.capabilities),
            "modified_at": _rfc3339(spec.modified_at_ns),
        }
        if spec.system:
            out["system"] = spec.system
        return _json(out)
