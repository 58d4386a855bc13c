"""The state one simulated host keeps, shared by every endpoint, and the checks they share.

Ollama's endpoints share one server's state (local models, registry, blobs, loaded
runners, the admission queue), so it lives here, in one base class; the endpoints
are mixins over it (`_generation`, `_embeddings`, `_status`, `_models`), which keeps
each area in its own module without scattering the state.
"""

from __future__ import annotations

import asyncio
import copy
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.ollama_sim._catalogue import ModelSpec, default_models, default_registry
from tests.support.ollama_sim._errors import DEFAULT_FAIL_MESSAGE, SimError
from tests.support.ollama_sim._gotime import parse_keep_alive
from tests.support.ollama_sim._names import _key, _valid_name
from tests.support.ollama_sim._request import RecordedRequest, _decode_body
from tests.support.ollama_sim._wire import JSON


@dataclass
class _Runner:
    """A loaded model, as Ollama's scheduler keeps one between requests."""

    spec: ModelSpec
    num_ctx: int
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    refs: int = 0
    expires_ns: int | None = None  # wall clock; None while forever
    last_used_ns: int = 0


class _SimCore:
    """Everything one simulated host keeps: knobs (`OllamaSim` documents them), counters,
    models, registry, blobs, loaded runners and the admission queue."""

    def __init__(
        self,
        models: Iterable[ModelSpec | str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token_rate: float | None = None,
        latency: float = 0.0,
        load_latency: float = 0.0,
        parallel: int = 1,
        max_queue: int = 512,
        fail_after_tokens: int | None = None,
        fail_message: str = DEFAULT_FAIL_MESSAGE,
        die_after_tokens: int | None = None,
        version: str = "0.12.6",
        registry: Iterable[ModelSpec | str] | Mapping[str, ModelSpec] | None = None,
        response_tokens: int = 16,
        thinking_tokens: int = 8,
        keep_alive: float | str = "5m",
        max_loaded_models: int | None = None,
        pull_delay: float = 0.0,
    ) -> None:
        self.host = host
        self.port = port  # 0 until started; kept so a restarted sim comes back on the same port
        self.token_rate = token_rate  # tokens/s; None streams as fast as the loop allows
        self.latency = latency  # seconds before the first token (prompt evaluation)
        self.load_latency = load_latency  # seconds to load a model that is not loaded
        self._parallel = parallel
        self.max_queue = max_queue
        self.fail_after_tokens = fail_after_tokens
        self.fail_message = fail_message
        self.die_after_tokens = die_after_tokens
        self.version = version
        self.response_tokens = response_tokens  # length of an answer when num_predict is unset
        self.thinking_tokens = thinking_tokens
        self.keep_alive = keep_alive  # OLLAMA_KEEP_ALIVE: used when a request gives none
        self.max_loaded_models = max_loaded_models
        self.pull_delay = pull_delay  # seconds between pull/push progress lines
        self.models: dict[str, ModelSpec] = {}
        for m in default_models() if models is None else models:
            self.add_model(m)
        self.registry: dict[str, ModelSpec] = {}
        reg: Iterable[ModelSpec | str] = (
            default_registry() if registry is None else registry.values() if isinstance(registry, Mapping) else registry
        )
        for m in reg:
            spec = ModelSpec(m) if isinstance(m, str) else copy.deepcopy(m)
            self.registry[_key(spec.name)] = spec
        # Uploaded blob contents; None for layers that arrived by pull (content not modelled).
        self.blobs: dict[str, bytes | None] = {}
        self._loaded: dict[str, _Runner] = {}
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._active: dict[int, web.BaseRequest] = {}  # by id(): requests are unhashable mappings
        self._runner: web.AppRunner | None = None
        self._stopping = False
        self.in_flight = 0  # admitted requests running now (generate, chat, embed)
        self.reset_counters()

    def reset_counters(self) -> None:
        self.requests: Counter[str] = Counter()  # by route, e.g. "/api/generate", "/api/blobs/{digest}"
        self.request_log: list[RecordedRequest] = []  # JSON bodies as received
        self.max_in_flight = self.in_flight  # in_flight itself is live state, never reset
        self.busy_rejections = 0  # 503s
        self.cancelled_streams = 0  # admitted work whose client went away; the generation stopped
        self.cancelled_queued = 0  # clients that went away while queued
        self.failed_streams = 0  # fail_after_tokens injections
        self.died_streams = 0  # die_after_tokens injections
        self.tokens_generated = 0

    def add_model(self, model: ModelSpec | str) -> ModelSpec:
        spec = ModelSpec(model) if isinstance(model, str) else copy.deepcopy(model)
        self.models[_key(spec.name)] = spec
        return spec

    async def _read_json(self, request: web.Request, where: str) -> JSON:
        body = _decode_body(await request.read(), where)
        self.request_log.append(RecordedRequest(request.method, request.path, body))
        return body

    def _lookup(self, name: Any) -> ModelSpec:
        """Resolve a model for inference, with the errors of Ollama's scheduler."""
        if not isinstance(name, str) or not _valid_name(name):
            raise SimError(400, "model is required")
        spec = self.models.get(_key(name))
        if spec is None:
            raise SimError(404, f'model "{name}" not found, try pulling it first')
        return spec

    def _keep_alive(self, body: JSON) -> int | None:
        value = body.get("keep_alive")
        return parse_keep_alive(self.keep_alive if value is None else value)

    @staticmethod
    def _require(spec: ModelSpec, name: str, capability: str, verb: str) -> None:
        if not spec.supports(capability):
            raise SimError(400, f'"{name}" does not support {verb}')
