"""`/api/embed` and the legacy `/api/embeddings`: deterministic vectors per model and text."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from tests.support.ollama_sim._catalogue import ModelSpec
from tests.support.ollama_sim._errors import SimError
from tests.support.ollama_sim._request import _field, _options
from tests.support.ollama_sim._scheduler import _Scheduler
from tests.support.ollama_sim._text import _count_tokens, _rng, _unit
from tests.support.ollama_sim._wire import _json


class _EmbeddingRoutes(_Scheduler):
    """Embeddings go through admission and loading like generation, but answer in one body."""

    def _vector(self, spec: ModelSpec, text: str) -> list[float]:
        rng = _rng("embed", spec.name, text)
        return [rng.gauss(0.0, 1.0) for _ in range(spec.embedding_dim)]

    async def _embed(self, request: web.Request) -> web.StreamResponse:
        w = "EmbedRequest"
        body = await self._read_json(request, w)
        model = _field(body, "model", str, w, "string") or ""
        options = _options(body, w)
        truncate = _field(body, "truncate", bool, w, "bool")
        dimensions = _field(body, "dimensions", int, w, "int") or 0
        spec = self._lookup(model)
        keep_alive = self._keep_alive(body)
        raw = body.get("input")
        if isinstance(raw, str):
            inputs = [raw] if raw else []
        elif isinstance(raw, list) and all(isinstance(x, str) for x in raw):
            inputs = list(raw)
        elif raw is None:
            inputs = []
        else:
            raise SimError(400, "invalid input type")
        num_ctx = int(options.get("num_ctx", spec.context_length))
        texts = []
        for text in inputs:
            words = text.split()
            if len(words) > num_ctx:
                if truncate is False:
                    raise SimError(400, "input length exceeds maximum context length")
                text = " ".join(words[:num_ctx])
            texts.append(text)
        started = time.monotonic_ns()
        try:
            async with self._working(spec, keep_alive, num_ctx) as load_ns:
                if self.latency > 0 and texts:
                    await asyncio.sleep(self.latency)
                vectors = []
                for text in texts:
                    vector = _unit(self._vector(spec, text))
                    if 0 < dimensions < len(vector):
                        vector = _unit(vector[:dimensions])  # Matryoshka cut, renormalised as Ollama does
                    vectors.append(vector)
        except ConnectionResetError:
            return web.Response()
        return _json(
            {
                "model": model,
                "embeddings": vectors,
                "total_duration": max(1, time.monotonic_ns() - started),
                "load_duration": load_ns,
                "prompt_eval_count": sum(_count_tokens(t) for t in texts),
            }
        )

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        w = "EmbeddingRequest"
        body = await self._read_json(request, w)
        model = _field(body, "model", str, w, "string") or ""
        prompt = _field(body, "prompt", str, w, "string") or ""
        spec = self._lookup(model)
        keep_alive = self._keep_alive(body)
        if not prompt:
            return _json({"embedding": []})
        try:
            async with self._working(spec, keep_alive, spec.context_length):
                if self.latency > 0:
                    await asyncio.sleep(self.latency)
                vector = self._vector(spec, prompt)  # the legacy endpoint does not normalise
        except ConnectionResetError:
            return web.Response()
        return _json({"embedding": vector})
