"""A faithful simulator of Ollama's REST API, for tests.

Why a simulator rather than mocks: every OLOL mode speaks Ollama's HTTP API and
the official clients are the judges of compatibility. A real HTTP server with
Ollama's status codes, NDJSON framing, error texts, model loading and request
queueing lets each layer be tested end to end without GPUs, deterministically,
and lets tests inject what real hosts do (slow tokens, busy, an error line
mid-stream, a crash, a client hanging up).

Output is deterministic: text is words drawn from a fixed vocabulary with a
generator seeded by model, prompt and `options.seed`; embeddings likewise.
"Tokens" are whitespace-separated words.

This module is long on purpose: it models one external system whose endpoints
share state (models, blobs, loaded runners, admission queue); splitting it
would scatter that state without making any part reusable. The error texts are
Ollama's own literals, deliberately not imported from `olol.errors`, so the
simulator stays an independent oracle the project's errors are checked against.

Run standalone (a host that tests can kill):
    python -m tests.support.ollama_sim --models llama3.2,nomic-embed-text --token-rate 50
prints `READY http://127.0.0.1:PORT` once listening and exits 0 on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import random
import re
import signal
import sys
import time
import zlib
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

__all__ = [
    "BUSY_MESSAGE",
    "ModelSpec",
    "OllamaSim",
    "RecordedRequest",
    "SimError",
    "default_models",
    "default_registry",
    "main",
    "normalize_name",
]

JSON = dict[str, Any]
NS = 1_000_000_000
BUSY_MESSAGE = "server busy, please try again. maximum pending requests exceeded"
DEFAULT_FAIL_MESSAGE = "an error was encountered while running the model: simulated failure"
MODELS_DIR = "/root/.ollama/models"  # only quoted in error texts, never touched
_FOREVER_NS = 2**63 - 1  # Go's max time.Duration: what a negative keep_alive becomes

_VOCAB = (
    "the", "a", "model", "cluster", "token", "stream", "node", "quick", "brown", "fox",
    "jumps", "over", "lazy", "dog", "river", "mountain", "light", "signal", "answer", "question",
    "simple", "bright", "green", "silent", "engine", "garden", "window", "paper", "stone", "cloud",
    "music", "ocean", "forest", "memory", "number", "letter", "castle", "rocket", "planet", "candle",
    "bridge", "mirror", "thunder", "velvet", "harbor", "lantern", "meadow", "orbit",
)  # fmt: skip


class SimError(Exception):
    """An Ollama error: becomes `{"error": message}` with `status`, or an error line mid-stream."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ----------------------------------------------------------------- names
_NAME_RE = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/){0,2}[A-Za-z0-9][\w.-]{0,79}(?::\w[\w.-]{0,79})?$")


def normalize_name(name: str) -> str:
    """`llama3` -> `llama3:latest`; the default registry and `library/` are implied, as in Ollama."""
    n = name.strip()
    for prefix in ("registry.ollama.ai/library/", "registry.ollama.ai/", "library/"):
        if n.lower().startswith(prefix):
            n = n[len(prefix) :]
            break
    if ":" not in n.rsplit("/", 1)[-1]:
        n += ":latest"
    return n


def _key(name: str) -> str:
    # Ollama matches names case-insensitively but shows them as written.
    return normalize_name(name).lower()


def _valid_name(name: str) -> bool:
    return bool(name) and _NAME_RE.match(name.strip()) is not None


# ----------------------------------------------------------------- models
_FAMILIES = (
    ("nomic", "nomic-bert"), ("all-minilm", "bert"), ("mxbai", "bert"), ("bge", "bert"),
    ("qwen3", "qwen3"), ("qwen", "qwen2"), ("gemma3", "gemma3"), ("gemma", "gemma"),
    ("mistral", "llama"), ("phi3", "phi3"), ("llama", "llama"),
)  # fmt: skip
_BYTES_PER_PARAM = (("Q4", 0.6), ("Q5", 0.7), ("Q6", 0.82), ("Q8", 1.07), ("BF16", 2.0), ("F16", 2.0))
_FILE_TYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q8_0": 7, "Q4_K_M": 15, "Q5_K_M": 17, "Q6_K": 18, "BF16": 32}
_LLAMA_STOPS = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def _param_count(size: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMBT])", size.upper())
    if m is None:
        return 1e9
    return float(m.group(1)) * {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}[m.group(2)]


@dataclass
class ModelSpec:
    """One local (or pullable) model. Fields left empty are filled from the name, the way
    `llama3.2:1b-q8_0` tells a person its size and quantization."""

    name: str
    size: int = 0
    digest: str = ""  # manifest digest, hex without "sha256:" as /api/tags shows it
    family: str = ""
    parameter_size: str = ""
    quantization_level: str = ""
    format: str = "gguf"
    embedding_dim: int = 0
    context_length: int = 0
    capabilities: list[str] = field(default_factory=list)
    template: str = ""
    system: str = ""
    license: str = ""
    parameters: JSON = field(default_factory=dict)
    modified_at_ns: int = 0

    def __post_init__(self) -> None:
        self.name = normalize_name(self.name)
        base, _, tag = self.name.rsplit("/", 1)[-1].lower().partition(":")
        embedding = any(k in base for k in ("embed", "minilm", "bge"))
        if not self.capabilities:
            caps = ["embedding"] if embedding else ["completion", "tools"]
            if base.startswith(("qwen3", "deepseek-r1", "gpt-oss", "magistral")):
                caps.append("thinking")
            if "vision" in base or "llava" in base:
                caps.append("vision")
            if "coder" in base:
                caps.append("insert")
            self.capabilities = caps
        if not self.family:
            found = next((fam for prefix, fam in _FAMILIES if base.startswith(prefix)), None)
            letters = re.match(r"[a-z]+", base)
            self.family = found or (letters.group() if letters else "llama")
        if not self.parameter_size:
            m = re.search(r"(?<![\w.])(\d+(?:\.\d+)?)([bm])(?![a-z])", tag)
            self.parameter_size = f"{m.group(1)}{m.group(2).upper()}" if m else ("137M" if embedding else "3.2B")
        if not self.quantization_level:
            m = re.search(r"(q\d(?:_[0-9a-z]+)*|bf16|fp16|f16|fp32|f32)", tag)
            q = m.group(1).upper().replace("FP", "F") if m else ("F16" if embedding else "Q4_K_M")
            self.quantization_level = q
        params = _param_count(self.parameter_size)
        if not self.size:
            bpp = next((b for p, b in _BYTES_PER_PARAM if self.quantization_level.startswith(p)), 4.0)
            self.size = int(params * bpp)
        self.digest = self.digest.removeprefix("sha256:") or _sha256(self.name.encode())
        if not self.embedding_dim:
            self.embedding_dim = 768 if embedding else (2048 if params < 2e9 else 3072 if params < 5e9 else 4096)
        if not self.context_length:
            self.context_length = 2048 if embedding else 131072
        if not self.template:
            self.template = "{{ .Prompt }}" if embedding else "{{ if .System }}{{ .System }}\n{{ end }}{{ .Prompt }}"
        if not self.parameters and self.family == "llama" and not embedding:
            self.parameters = {"stop": list(_LLAMA_STOPS)}
        if not self.modified_at_ns:
            self.modified_at_ns = time.time_ns()

    def supports(self, capability: str) -> bool:
        return capability in self.capabilities

    def details(self) -> JSON:
        return {
            "parent_model": "",
            "format": self.format,
            "family": self.family,
            "families": [self.family],
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization_level,
        }

    def layers(self) -> list[tuple[str, int]]:
        """(digest, size) of the blobs a manifest of this model would list."""
        parts = [
            ("sha256:" + _sha256(f"{self.digest}:model".encode()), self.size),
            _blob_of(self.template),
            _blob_of(json.dumps(self.parameters, sort_keys=True)),
        ]
        if self.system:
            parts.append(_blob_of(self.system))
        if self.license:
            parts.append(_blob_of(self.license))
        return parts


def default_models() -> list[ModelSpec]:
    """What the `ollama_sim` fixture starts with: two chat models, an embedder, a thinker."""
    return [
        ModelSpec("llama3.2:latest", quantization_level="Q4_0", parameter_size="3.2B"),
        ModelSpec("llama3.2:1b-q8_0", parameter_size="1.2B"),
        ModelSpec("nomic-embed-text:latest"),
        ModelSpec("qwen3:0.6b"),
    ]


def default_registry() -> list[ModelSpec]:
    """What `/api/pull` can fetch unless a test configures its own registry."""
    return [*default_models(), ModelSpec("qwen2.5:0.5b"), ModelSpec("all-minilm:latest")]


# ----------------------------------------------------------------- small helpers
def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _blob_of(text: str) -> tuple[str, int]:
    data = text.encode()
    return "sha256:" + _sha256(data), len(data)


def _blob_key(digest: str) -> str | None:
    """Ollama accepts `sha256:<hex>` and `sha256-<hex>` (its on-disk spelling)."""
    m = re.fullmatch(r"sha256[:-]([0-9a-fA-F]{64})", digest)
    return "sha256:" + m.group(1).lower() if m else None


def _dumps(obj: Any) -> bytes:
    # Go's encoder: compact, UTF-8 as is.
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=_dumps(obj), content_type="application/json", charset="utf-8")


def _rfc3339(ns: int) -> str:
    """Go's RFC3339Nano: nanoseconds with trailing zeros trimmed."""
    sec, frac = divmod(ns, NS)
    out = datetime.fromtimestamp(sec, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        out += "." + f"{frac:09d}".rstrip("0")
    return out + "Z"


def _now() -> str:
    return _rfc3339(time.time_ns())


_DURATION_UNITS = {"ns": 1, "us": 1e3, "µs": 1e3, "μs": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9}


def parse_keep_alive(value: Any) -> int | None:
    """Nanoseconds, or None for forever; numbers are seconds and strings Go durations, as
    Ollama's api.Duration decodes them (errors carry Go's texts)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SimError(400, f"Unsupported type: '{type(value).__name__}'")
    if not isinstance(value, str):
        return None if value < 0 else int(value * NS)
    text = value
    negative = text.startswith("-")
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return 0
    if not body:
        raise SimError(400, f'time: invalid duration "{text}"')
    total, pos = 0.0, 0
    while pos < len(body):
        num = re.match(r"\d+(?:\.\d*)?|\.\d+", body[pos:])
        if num is None:
            raise SimError(400, f'time: invalid duration "{text}"')
        pos += num.end()
        unit = re.match(r"[^\d.]*", body[pos:])
        unit_text = unit.group() if unit else ""
        if not unit_text:
            raise SimError(400, f'time: missing unit in duration "{text}"')
        if unit_text not in _DURATION_UNITS:
            raise SimError(400, f'time: unknown unit "{unit_text}" in duration "{text}"')
        pos += len(unit_text)
        total += float(num.group()) * _DURATION_UNITS[unit_text]
    if negative and total > 0:
        return None
    return int(total)


def _rng(*parts: Any) -> random.Random:
    seed = hashlib.sha256("\x00".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(seed[:8], "big"))


def _words(rng: random.Random, n: int) -> list[str]:
    return [(" " if i else "") + rng.choice(_VOCAB) for i in range(n)]


def _token_id(word: str) -> int:
    return zlib.crc32(word.strip().encode()) % 128256


def _count_tokens(text: str) -> int:
    return len(text.split())


def _unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def _schema_instance(schema: Any, rng: random.Random, depth: int = 0) -> Any:
    """A deterministic value satisfying the common parts of a JSON schema (for `format`
    and tool arguments), enough for clients that parse the output."""
    if not isinstance(schema, dict) or depth > 8:
        return rng.choice(_VOCAB)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return _schema_instance(schema[key][0], rng, depth + 1)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties") or {}
        return {k: _schema_instance(v, rng, depth + 1) for k, v in props.items()}
    if kind == "array":
        count = max(1, int(schema.get("minItems", 1)))
        return [_schema_instance(schema.get("items"), rng, depth + 1) for _ in range(count)]
    if kind == "integer":
        return rng.randint(0, 100)
    if kind == "number":
        return round(rng.uniform(0, 100), 2)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return rng.choice(_VOCAB)


# ----------------------------------------------------------------- request decoding
_GO_KINDS: dict[type, str] = {str: "string", bool: "bool", int: "number", float: "number", list: "array"}


def _field(body: JSON, key: str, expected: type | tuple[type, ...], where: str, go_type: str) -> Any:
    """A field as Go's decoder would accept it, else 400 with Go's unmarshal error."""
    value = body.get(key)
    if value is None:
        return None
    ok = isinstance(value, expected) and not (isinstance(value, bool) and bool not in _as_tuple(expected))
    if not ok:
        kind = _GO_KINDS.get(type(value), "object")
        raise SimError(400, f"json: cannot unmarshal {kind} into Go struct field {where}.{key} of type {go_type}")
    return value


def _as_tuple(t: type | tuple[type, ...]) -> tuple[type, ...]:
    return t if isinstance(t, tuple) else (t,)


def _stream_flag(body: JSON, where: str) -> bool:
    value = _field(body, "stream", bool, where, "bool")
    return True if value is None else bool(value)


def _options(body: JSON, where: str) -> JSON:
    return dict(_field(body, "options", dict, where, "map[string]interface {}") or {})


def _num_predict(options: JSON) -> int | None:
    value = options.get("num_predict")
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if value < 0 else int(value)


def _stops(options: JSON) -> list[str]:
    stop = options.get("stop")
    if isinstance(stop, str):
        return [stop]
    return [s for s in stop if isinstance(s, str) and s] if isinstance(stop, list) else []


def _think_on(value: Any) -> bool:
    # `think` is a bool, or a level ("low"/"medium"/"high") for models that take one.
    return value is True or (isinstance(value, str) and value in ("low", "medium", "high"))


@dataclass
class RecordedRequest:
    method: str
    path: str
    body: JSON


@dataclass
class _Plan:
    """What a generation will emit: (kind, value) steps and how it ends."""

    steps: list[tuple[str, Any]]
    done_reason: str

    def text(self, kind: str) -> str:
        return "".join(v for k, v in self.steps if k == kind)

    def tool_calls(self) -> list[JSON]:
        return [call for k, v in self.steps if k == "tool_calls" for call in v]


@dataclass
class _Runner:
    """A loaded model, as Ollama's scheduler keeps one between requests."""

    spec: ModelSpec
    num_ctx: int
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    refs: int = 0
    expires_ns: int | None = None  # wall clock; None while forever
    last_used_ns: int = 0


class _Ndjson:
    """Ollama's streamResponse: headers go out with the first object, so an error before
    any output is a plain JSON error with its own status, and one after output is a final
    `{"error": ...}` line under the 200 already sent. Not streaming, the last object wins."""

    def __init__(self, request: web.Request, stream: bool) -> None:
        self._request = request
        self._stream = stream
        self.response: web.StreamResponse | None = None
        self.last: JSON = {}

    async def _open(self) -> web.StreamResponse:
        if self.response is None:
            response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
            await response.prepare(self._request)
            self.response = response
        return self.response

    async def send(self, obj: JSON) -> None:
        self.last = obj
        if self._stream:
            await (await self._open()).write(_dumps(obj) + b"\n")

    async def error(self, status: int, message: str) -> web.StreamResponse:
        if self.response is None:
            return _json({"error": message}, status)
        await self.response.write(_dumps({"error": message}) + b"\n")
        await self.response.write_eof()
        return self.response

    async def finish(self) -> web.StreamResponse:
        if not self._stream:
            return _json(self.last)
        response = await self._open()  # an empty stream is still a 200 stream
        await response.write_eof()
        return response


# ----------------------------------------------------------------- the server
class OllamaSim:
    """An Ollama server in-process (aiohttp), with knobs for the failure modes hosts have.

    Knobs are constructor arguments and plain attributes a test may change while it
    runs. Counters are attributes too; `reset_counters()` zeroes them.
    """

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

    # ------------------------------------------------------------- public API
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

    @property
    def parallel(self) -> int:
        return self._parallel

    @parallel.setter
    def parallel(self, value: int) -> None:
        self._parallel = value
        self._wake()  # more slots: queued requests start now

    @property
    def queued(self) -> int:
        return sum(1 for f in self._waiters if not f.done())

    @property
    def url(self) -> str:
        if self._runner is None:
            raise RuntimeError("OllamaSim is not started")
        return f"http://{self.host}:{self.port}"

    def add_model(self, model: ModelSpec | str) -> ModelSpec:
        spec = ModelSpec(model) if isinstance(model, str) else copy.deepcopy(model)
        self.models[_key(spec.name)] = spec
        return spec

    def loaded_models(self) -> list[str]:
        self._expire()
        return [r.spec.name for r in self._loaded.values()]

    async def start(self) -> OllamaSim:
        app = web.Application(middlewares=[self._middleware()], client_max_size=1 << 31)
        self._routes(app)
        # handler_cancellation: a client hanging up cancels its handler, as Ollama cancels
        # the request context, so the generation loop stops instead of running on.
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self.port = int(runner.addresses[0][1])
        self._runner = runner
        return self

    async def stop(self) -> None:
        """The host goes away: in-flight streams are cut, the port is closed."""
        if self._runner is None:
            return
        self._stopping = True
        try:
            for request in list(self._active.values()):
                if request.transport is not None:
                    request.transport.abort()
            await self._runner.cleanup()
        finally:
            self._runner = None
            self._stopping = False

    async def __aenter__(self) -> OllamaSim:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------- plumbing
    def _routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/", self._root)  # add_get also answers HEAD, as Ollama does
        r.add_get("/api/version", self._version)
        r.add_post("/api/generate", self._generate)
        r.add_post("/api/chat", self._chat)
        r.add_post("/api/embed", self._embed)
        r.add_post("/api/embeddings", self._embeddings)
        r.add_get("/api/tags", self._tags)
        r.add_get("/api/ps", self._ps)
        r.add_post("/api/show", self._show)
        r.add_post("/api/pull", self._pull)
        r.add_post("/api/push", self._push)
        r.add_post("/api/create", self._create)
        r.add_route("HEAD", "/api/blobs/{digest}", self._head_blob)
        r.add_post("/api/blobs/{digest}", self._post_blob)
        r.add_post("/api/copy", self._copy)
        r.add_delete("/api/delete", self._delete)

    def _middleware(self) -> Middleware:
        @web.middleware
        async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            resource = request.match_info.route.resource
            self.requests[resource.canonical if resource is not None else request.path] += 1
            self._active[id(request)] = request
            try:
                return await handler(request)
            except SimError as e:
                return _json({"error": e.message}, e.status)
            except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
                # gin without HandleMethodNotAllowed: a wrong method is a plain 404 too.
                return web.Response(status=404, text="404 page not found")
            finally:
                self._active.pop(id(request), None)

        return middleware

    async def _read_json(self, request: web.Request, where: str) -> JSON:
        raw = await request.read()
        if not raw.strip():
            raise SimError(400, "missing request body")
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            doc, pos = getattr(e, "doc", ""), getattr(e, "pos", 0)
            if pos >= len(doc.rstrip()):
                raise SimError(400, "unexpected EOF") from None
            raise SimError(400, f"invalid character {doc[pos]!r} looking for beginning of value") from None
        if not isinstance(body, dict):
            kind = _GO_KINDS.get(type(body), "object")
            raise SimError(400, f"json: cannot unmarshal {kind} into Go value of type api.{where}")
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

    # ------------------------------------------------------------- admission (parallel + queue)
    async def _acquire_slot(self) -> None:
        if self.in_flight < self._parallel and not self._waiters:
            self._take_slot()
            return
        if self.queued >= self.max_queue:
            self.busy_rejections += 1
            raise SimError(503, BUSY_MESSAGE)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # _wake takes the slot on our behalf before resolving us
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release_slot()  # handed a slot just as the client left
            else:
                self.cancelled_queued += 1
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            raise

    def _take_slot(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _release_slot(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        # FIFO hand-over: the slot is taken here, synchronously, so no newcomer can jump the queue.
        while self._waiters and self.in_flight < self._parallel:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._take_slot()
                waiter.set_result(None)

    # ------------------------------------------------------------- loaded models (/api/ps)
    def _expire(self) -> None:
        now = time.time_ns()
        for key, runner in list(self._loaded.items()):
            if runner.refs == 0 and runner.expires_ns is not None and runner.expires_ns <= now:
                del self._loaded[key]

    def _unload(self, spec: ModelSpec) -> None:
        runner = self._loaded.get(_key(spec.name))
        if runner is not None and runner.refs == 0:
            del self._loaded[_key(spec.name)]
        elif runner is not None:
            runner.expires_ns = time.time_ns()  # unload once the running requests finish

    async def _load(self, spec: ModelSpec, keep_alive: int | None, num_ctx: int) -> int:
        """Take a reference on the model's runner, loading it if needed; returns load ns."""
        started = time.monotonic_ns()
        self._expire()
        key = _key(spec.name)
        runner = self._loaded.get(key)
        if runner is None:
            if self.max_loaded_models is not None:
                idle = sorted((r for r in self._loaded.values() if r.refs == 0), key=lambda r: r.last_used_ns)
                while idle and len(self._loaded) >= self.max_loaded_models:
                    del self._loaded[_key(idle.pop(0).spec.name)]
            runner = self._loaded[key] = _Runner(spec=spec, num_ctx=num_ctx)
            runner.refs += 1
            try:
                if self.load_latency > 0:
                    await asyncio.sleep(self.load_latency)
            finally:
                runner.ready.set()
        else:
            runner.refs += 1
            await runner.ready.wait()
        runner.expires_ns = None if keep_alive is None else time.time_ns() + keep_alive
        runner.last_used_ns = time.time_ns()
        return max(1, time.monotonic_ns() - started)

    def _done_with(self, spec: ModelSpec, keep_alive: int | None) -> None:
        runner = self._loaded.get(_key(spec.name))
        if runner is None:
            return
        runner.refs -= 1
        # Ollama counts keep_alive from the end of the request.
        runner.expires_ns = None if keep_alive is None else time.time_ns() + keep_alive
        self._expire()

    @contextlib.asynccontextmanager
    async def _working(self, spec: ModelSpec, keep_alive: int | None, num_ctx: int) -> AsyncIterator[int]:
        """Admission, then the model loaded for the body's duration; yields load ns."""
        await self._acquire_slot()
        try:
            load_ns = await self._load(spec, keep_alive, num_ctx)
            try:
                yield load_ns
            finally:
                self._done_with(spec, keep_alive)
        except (asyncio.CancelledError, ConnectionResetError):
            if not self._stopping and self._runner is not None:  # our own shutdown is no hang-up
                self.cancelled_streams += 1
            raise
        finally:
            self._release_slot()

    async def _pace(self, first_at: float, index: int) -> None:
        loop = asyncio.get_running_loop()
        if not self.token_rate or self.token_rate <= 0:
            await asyncio.sleep(0)  # still yield, so concurrency and hang-ups stay observable
            return
        await asyncio.sleep(max(0.0, first_at + index / self.token_rate - loop.time()))

    # ------------------------------------------------------------- generation
    def _plan(
        self,
        spec: ModelSpec,
        prompt_key: str,
        options: JSON,
        *,
        think: bool,
        fmt: Any,
        tool_calls: list[JSON] | None,
    ) -> _Plan:
        rng = _rng(spec.name, prompt_key, options.get("seed", 0))
        limit = _num_predict(options)
        steps: list[tuple[str, Any]] = []
        if think:
            for word in _words(_rng("think", spec.name, prompt_key), self.thinking_tokens):
                if limit is not None and len(steps) >= limit:
                    return _Plan(steps, "length")
                steps.append(("thinking", word))
        if tool_calls:
            return _Plan([*steps, ("tool_calls", tool_calls)], "stop")
        if fmt:
            obj = {"response": "".join(_words(rng, 3))} if fmt == "json" else _schema_instance(fmt, rng)
            text = json.dumps(obj)
            natural = re.findall(r"\s*\S+", text)
        elif limit is None:
            natural = _words(rng, self.response_tokens)
        else:
            natural = _words(rng, max(0, limit - len(steps)))
        stops, text, truncated = _stops(options), "", False
        for word in natural:
            if limit is not None and len(steps) >= limit:
                truncated = True
                break
            candidate = text + word
            hits = [i for i in (candidate.find(s) for s in stops) if i >= 0]
            if hits:
                piece = candidate[len(text) : min(hits)]
                if piece:
                    steps.append(("content", piece))
                return _Plan(steps, "stop")
            steps.append(("content", word))
            text = candidate
        # Free text only ends by itself when num_predict is unset; with it, the budget ends it.
        truncated = truncated or (limit is not None and not fmt and len(steps) >= limit)
        return _Plan(steps, "length" if truncated else "stop")

    @staticmethod
    def _chunk(kind: Literal["generate", "chat"], model: str, step: str, value: Any) -> JSON:
        head: JSON = {"model": model, "created_at": _now()}
        if kind == "generate":
            if step == "thinking":
                return {**head, "response": "", "thinking": value, "done": False}
            return {**head, "response": value, "done": False}
        message: JSON = {"role": "assistant", "content": value if step == "content" else ""}
        if step == "thinking":
            message["thinking"] = value
        elif step == "tool_calls":
            message["tool_calls"] = value
        return {**head, "message": message, "done": False}

    async def _serve_generation(
        self,
        request: web.Request,
        *,
        kind: Literal["generate", "chat"],
        model: str,
        spec: ModelSpec,
        plan: _Plan,
        stream: bool,
        keep_alive: int | None,
        options: JSON,
        prompt_tokens: list[int],
    ) -> web.StreamResponse:
        started = time.monotonic_ns()
        out = _Ndjson(request, stream)
        loop = asyncio.get_running_loop()
        try:
            async with self._working(spec, keep_alive, int(options.get("num_ctx", 4096))) as load_ns:
                if self.latency > 0:
                    await asyncio.sleep(self.latency)
                first_at, first_ns = loop.time(), time.monotonic_ns()
                emitted = 0
                for index, (step, value) in enumerate(plan.steps):
                    if index:
                        await self._pace(first_at, index)
                    if request.transport is None or request.transport.is_closing():
                        raise ConnectionResetError("client went away")
                    if (injected := await self._inject(request, out, emitted)) is not None:
                        return injected
                    await out.send(self._chunk(kind, model, step, value))
                    emitted += 1
                    self.tokens_generated += 1
                if (injected := await self._inject(request, out, emitted)) is not None:
                    return injected
                end_ns = time.monotonic_ns()
                stats = {
                    "total_duration": max(1, end_ns - started),
                    "load_duration": load_ns,
                    "prompt_eval_count": max(1, len(prompt_tokens)),
                    "prompt_eval_duration": max(1, first_ns - started - load_ns),
                    "eval_count": len(plan.steps),
                    "eval_duration": max(1, end_ns - first_ns),
                }
                final = self._final(kind, model, plan, stream, stats, prompt_tokens)
                if not stream:
                    return _json(final)
                await out.send(final)
                return await out.finish()
        except ConnectionResetError:
            # Counted by _working; the connection is gone, aiohttp discards whatever we return.
            return out.response or web.Response()

    def _final(self, kind: str, model: str, plan: _Plan, stream: bool, stats: JSON, prompt_tokens: list[int]) -> JSON:
        content = plan.text("content")
        thinking = plan.text("thinking")
        head: JSON = {"model": model, "created_at": _now()}
        if kind == "generate":
            final: JSON = {**head, "response": "" if stream else content}
            if thinking and not stream:
                final["thinking"] = thinking
            context = prompt_tokens + [_token_id(w) for w in content.split()]
            return {**final, "done": True, "done_reason": plan.done_reason, "context": context, **stats}
        message: JSON = {"role": "assistant", "content": "" if stream else content}
        if not stream and thinking:
            message["thinking"] = thinking
        if not stream and plan.tool_calls():
            message["tool_calls"] = plan.tool_calls()
        return {**head, "message": message, "done": True, "done_reason": plan.done_reason, **stats}

    async def _inject(self, request: web.Request, out: _Ndjson, emitted: int) -> web.StreamResponse | None:
        """The failures a host has mid-generation, when a test asked for one."""
        if self.die_after_tokens is not None and emitted >= self.die_after_tokens:
            self.died_streams += 1
            if request.transport is not None:
                request.transport.abort()  # a crash: no final chunk, no chunked terminator
            return out.response or web.Response()
        if self.fail_after_tokens is not None and emitted >= self.fail_after_tokens:
            self.failed_streams += 1
            return await out.error(500, self.fail_message)
        return None

    def _load_or_unload(
        self, kind: str, model: str, spec: ModelSpec, body: JSON, keep_alive: int | None
    ) -> web.Response:
        """An empty prompt/messages only loads the model; with keep_alive 0 it unloads it."""
        if body.get("keep_alive") is not None and keep_alive == 0:
            self._unload(spec)
            reason = "unload"
        else:
            reason = "load"
        head: JSON = {"model": model, "created_at": _now()}
        if kind == "generate":
            return _json({**head, "response": "", "done": True, "done_reason": reason})
        return _json({**head, "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": reason})

    def _check_format(self, fmt: Any) -> Any:
        if fmt in (None, "") or fmt == "json" or isinstance(fmt, dict):
            return fmt or None
        raise SimError(400, f'invalid format: {json.dumps(fmt)}; expected "json" or a valid JSON Schema')

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        w = "GenerateRequest"
        body = await self._read_json(request, w)
        model = _field(body, "model", str, w, "string") or ""
        prompt = _field(body, "prompt", str, w, "string") or ""
        system = _field(body, "system", str, w, "string") or ""
        context = _field(body, "context", list, w, "[]int") or []
        stream, options = _stream_flag(body, w), _options(body, w)
        spec = self._lookup(model)
        keep_alive = self._keep_alive(body)
        fmt = self._check_format(body.get("format"))
        if not prompt and body.get("keep_alive") is not None and keep_alive == 0:
            return self._load_or_unload("generate", model, spec, body, keep_alive)  # `ollama stop`
        self._require(spec, model, "completion", "generate")
        if _field(body, "suffix", str, w, "string"):
            self._require(spec, model, "insert", "insert")
        if _field(body, "images", list, w, "[]api.ImageData"):
            self._require(spec, model, "vision", "vision")
        think = _think_on(body.get("think"))
        if think:
            self._require(spec, model, "thinking", "thinking")
        if not prompt:
            await self._load(spec, keep_alive, int(options.get("num_ctx", 4096)))
            self._done_with(spec, keep_alive)
            return self._load_or_unload("generate", model, spec, body, keep_alive)
        options = {**spec.parameters, **options}  # the Modelfile's PARAMETERs are defaults
        plan = self._plan(spec, f"{system}\x00{prompt}", options, think=think, fmt=fmt, tool_calls=None)
        prompt_tokens = [int(t) for t in context if isinstance(t, int)]
        prompt_tokens += [_token_id(word) for word in f"{system} {prompt}".split()]
        return await self._serve_generation(
            request, kind="generate", model=model, spec=spec, plan=plan, stream=stream,
            keep_alive=keep_alive, options=options, prompt_tokens=prompt_tokens,
        )  # fmt: skip

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        w = "ChatRequest"
        body = await self._read_json(request, w)
        model = _field(body, "model", str, w, "string") or ""
        messages = _field(body, "messages", list, w, "[]api.Message") or []
        tools = _field(body, "tools", list, w, "api.Tools") or []
        if not all(isinstance(m, dict) for m in messages):
            raise SimError(400, f"json: cannot unmarshal string into Go struct field {w}.messages of type api.Message")
        stream, options = _stream_flag(body, w), _options(body, w)
        spec = self._lookup(model)
        keep_alive = self._keep_alive(body)
        fmt = self._check_format(body.get("format"))
        if not messages and body.get("keep_alive") is not None and keep_alive == 0:
            return self._load_or_unload("chat", model, spec, body, keep_alive)
        self._require(spec, model, "completion", "chat")
        if tools:
            self._require(spec, model, "tools", "tools")
        if any(m.get("images") for m in messages):
            self._require(spec, model, "vision", "vision")
        think = _think_on(body.get("think"))
        if think:
            self._require(spec, model, "thinking", "thinking")
        if not messages:
            await self._load(spec, keep_alive, int(options.get("num_ctx", 4096)))
            self._done_with(spec, keep_alive)
            return self._load_or_unload("chat", model, spec, body, keep_alive)
        options = {**spec.parameters, **options}
        transcript = "\n".join(f"{m.get('role', '')}: {m.get('content') or ''}" for m in messages)
        calls = _tool_calls(messages, tools, _rng("tools", spec.name, transcript))
        plan = self._plan(spec, transcript, options, think=think, fmt=fmt, tool_calls=calls)
        prompt_tokens = [_token_id(word) for m in messages for word in str(m.get("content") or "").split()]
        return await self._serve_generation(
            request, kind="chat", model=model, spec=spec, plan=plan, stream=stream,
            keep_alive=keep_alive, options=options, prompt_tokens=prompt_tokens,
        )  # fmt: skip

    # ------------------------------------------------------------- embeddings
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

    # ------------------------------------------------------------- model listing
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

    # ------------------------------------------------------------- model management
    async def _progress(self, request: web.Request, stream: bool, events: AsyncIterator[JSON]) -> web.StreamResponse:
        out = _Ndjson(request, stream)
        try:
            async for event in events:
                await out.send(event)
        except SimError as e:
            return await out.error(e.status, e.message)
        return await out.finish()

    def _name_field(self, body: JSON, where: str) -> str:
        return str(_field(body, "model", str, where, "string") or _field(body, "name", str, where, "string") or "")

    async def _pull(self, request: web.Request) -> web.StreamResponse:
        body = await self._read_json(request, "PullRequest")
        name = self._name_field(body, "PullRequest")
        if not _valid_name(name):
            raise SimError(400, "invalid model name")
        return await self._progress(request, _stream_flag(body, "PullRequest"), self._pull_events(name))

    async def _steps(self, verb: str, spec: ModelSpec) -> AsyncIterator[JSON]:
        for digest, total in spec.layers():
            done = sorted({int(total * f) for f in (0.0, 0.25, 0.5, 0.75, 1.0)})
            for completed in done:
                if self.pull_delay > 0:
                    await asyncio.sleep(self.pull_delay)
                event: JSON = {"status": f"{verb} {digest[7:19]}", "digest": digest, "total": total}
                if completed:
                    event["completed"] = completed  # Go's omitempty drops a zero
                yield event

    async def _pull_events(self, name: str) -> AsyncIterator[JSON]:
        yield {"status": "pulling manifest"}
        found = self.registry.get(_key(name))
        if found is None:
            raise SimError(500, "pull model manifest: file does not exist")
        async for event in self._steps("pulling", found):
            yield event
        for digest, _ in found.layers():
            self.blobs.setdefault(digest, None)
        yield {"status": "verifying sha256 digest"}
        yield {"status": "writing manifest"}
        self.models[_key(name)] = dataclasses.replace(found, name=name, modified_at_ns=time.time_ns())
        yield {"status": "success"}

    async def _push(self, request: web.Request) -> web.StreamResponse:
        body = await self._read_json(request, "PushRequest")
        name = self._name_field(body, "PushRequest")
        if not _valid_name(name):
            raise SimError(400, "invalid model name")
        return await self._progress(request, _stream_flag(body, "PushRequest"), self._push_events(name))

    async def _push_events(self, name: str) -> AsyncIterator[JSON]:
        yield {"status": "retrieving manifest"}
        spec = self.models.get(_key(name))
        if spec is None:
            yield {"status": "couldn't retrieve manifest"}
            path = normalize_name(name).replace(":", "/")
            path = path if path.count("/") >= 2 else f"library/{path}"
            raise SimError(500, f"open {MODELS_DIR}/manifests/registry.ollama.ai/{path}: no such file or directory")
        async for event in self._steps("pushing", spec):
            yield event
        yield {"status": "pushing manifest"}
        self.registry[_key(name)] = dataclasses.replace(spec)
        yield {"status": "success"}

    async def _create(self, request: web.Request) -> web.StreamResponse:
        body = await self._read_json(request, "CreateRequest")
        return await self._progress(request, _stream_flag(body, "CreateRequest"), self._create_events(body))

    async def _create_events(self, body: JSON) -> AsyncIterator[JSON]:
        w = "CreateRequest"
        name = self._name_field(body, w)
        files: JSON = _field(body, "files", dict, w, "map[string]string") or {}
        adapters: JSON = _field(body, "adapters", dict, w, "map[string]string") or {}
        for path, digest in {**files, **adapters}.items():
            key = _blob_key(str(digest))
            if key is None:
                raise SimError(400, f"invalid digest for {path}: invalid digest format")
            if key not in self.blobs:
                raise SimError(
                    400,
                    f"blob not found for {path} (digest {digest}): "
                    f"open {MODELS_DIR}/blobs/{key.replace(':', '-')}: no such file or directory",
                )
        if not _valid_name(name):
            raise SimError(400, "invalid model name")
        source = _field(body, "from", str, w, "string")
        if source:
            base = self.models.get(_key(source))
            if base is None:  # Ollama pulls a missing FROM model
                async for event in self._pull_events(source):
                    if event["status"] != "success":
                        yield event
                base = self.models[_key(source)]
            for digest, _ in base.layers():
                yield {"status": f"using existing layer {digest}"}
            spec = dataclasses.replace(base, name=name)
        elif files:
            size = 0
            for path, digest in sorted(files.items()):
                yield {"status": "parsing GGUF"}
                content = self.blobs[str(_blob_key(digest))]
                if path.endswith(".gguf") and content is not None and content[:4] not in (b"GGUF", b"FUGG"):
                    raise SimError(400, "supplied file was not in GGUF format")
                size += len(content or b"")
                yield {"status": f"using existing layer {_blob_key(digest)}"}
            spec = ModelSpec(name, size=size or 0)
        else:
            raise SimError(400, "neither 'from' or 'files' was specified")
        quantize = _field(body, "quantize", str, w, "string")
        if quantize:
            yield {"status": f"quantizing {spec.quantization_level} model to {quantize.upper()}"}
            spec.quantization_level = quantize.upper()
        license_ = body.get("license")
        changes: JSON = {
            "template": _field(body, "template", str, w, "string"),
            "system": _field(body, "system", str, w, "string"),
            "license": "\n".join(license_) if isinstance(license_, list) else license_,
            "parameters": _field(body, "parameters", dict, w, "map[string]interface {}"),
        }
        for key, value in changes.items():
            if value:
                yield {"status": f"creating new layer {_blob_of(json.dumps(value))[0]}"}
                setattr(spec, key, {**spec.parameters, **value} if key == "parameters" else value)
        if body.get("messages"):
            yield {"status": f"creating new layer {_blob_of(json.dumps(body['messages']))[0]}"}
        spec.digest = _sha256(json.dumps([name, spec.layers()]).encode())
        spec.modified_at_ns = time.time_ns()
        yield {"status": "writing manifest"}
        self.models[_key(name)] = spec
        yield {"status": "success"}

    async def _head_blob(self, request: web.Request) -> web.StreamResponse:
        key = _blob_key(request.match_info["digest"])
        if key is None:
            return _json({"error": "invalid digest format"}, 400)
        if key not in self.blobs:
            return _json({"error": f'blob "{request.match_info["digest"]}" not found'}, 404)
        return web.Response(status=200)

    async def _post_blob(self, request: web.Request) -> web.StreamResponse:
        digest = request.match_info["digest"]
        key = _blob_key(digest)
        if key is None:
            return _json({"error": "invalid digest format"}, 400)
        if key in self.blobs:
            return web.Response(status=200)  # already there: Ollama does not read the body
        data = await request.read()
        got = "sha256:" + _sha256(data)
        if got != key:
            return _json({"error": f'digest mismatch, expected "{digest}", got "{got}"'}, 400)
        self.blobs[key] = data
        return web.Response(status=201)

    async def _copy(self, request: web.Request) -> web.StreamResponse:
        w = "CopyRequest"
        body = await self._read_json(request, w)
        source = _field(body, "source", str, w, "string") or ""
        destination = _field(body, "destination", str, w, "string") or ""
        if not _valid_name(source):
            raise SimError(400, f'source "{source}" is invalid')
        if not _valid_name(destination):
            raise SimError(400, f'destination "{destination}" is invalid')
        spec = self.models.get(_key(source))
        if spec is None:
            raise SimError(404, f'model "{source}" not found')
        self.models[_key(destination)] = dataclasses.replace(spec, name=destination, modified_at_ns=time.time_ns())
        return web.Response(status=200)

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        body = await self._read_json(request, "DeleteRequest")
        name = self._name_field(body, "DeleteRequest")
        if not _valid_name(name):
            raise SimError(400, f'name "{name}" is invalid')
        spec = self.models.pop(_key(name), None)
        if spec is None:
            raise SimError(404, f"model '{name}' not found")
        self._unload(spec)
        return web.Response(status=200)


# ----------------------------------------------------------------- helpers for chat and show
def _tool_calls(messages: list[JSON], tools: list[Any], rng: random.Random) -> list[JSON] | None:
    """Echo tool use: "call <tool>" in the last (user) message calls that tool, with the JSON
    object that follows as arguments if there is one, else arguments made from its schema.
    After a tool result the model answers in text, so agent loops terminate."""
    if not tools or not messages or messages[-1].get("role") != "user":
        return None
    functions = {
        t["function"]["name"]: t["function"]
        for t in tools
        if isinstance(t, dict) and isinstance(t.get("function"), dict) and "name" in t["function"]
    }
    text = str(messages[-1].get("content") or "")
    calls: list[JSON] = []
    for m in re.finditer(r"\bcall\s+([A-Za-z_][\w.-]*)", text):
        function = functions.get(m.group(1))
        if function is None:
            continue
        rest = text[m.end() :].lstrip()
        arguments: Any = None
        if rest.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                arguments = json.JSONDecoder().raw_decode(rest)[0]
        if not isinstance(arguments, dict):
            arguments = _schema_instance(function.get("parameters") or {"type": "object"}, rng)
        calls.append({"function": {"name": m.group(1), "arguments": arguments}})
    return calls or None


def _parameters_text(parameters: JSON) -> str:
    lines = []
    for key, value in parameters.items():
        for item in value if isinstance(value, list) else [value]:
            lines.append(f"{key:<30} {json.dumps(item)}")
    return "\n".join(lines)


def _modelfile(spec: ModelSpec) -> str:
    lines = [
        '# Modelfile generated by "ollama show"',
        "# To build a new Modelfile based on this, replace FROM with:",
        f"# FROM {spec.name}",
        "",
        f"FROM {MODELS_DIR}/blobs/{spec.layers()[0][0].replace(':', '-')}",
        f'TEMPLATE """{spec.template}"""',
    ]
    if spec.system:
        lines.append(f'SYSTEM """{spec.system}"""')
    for key, value in spec.parameters.items():
        for item in value if isinstance(value, list) else [value]:
            lines.append(f"PARAMETER {key} {item}")
    if spec.license:
        lines.append(f'LICENSE """{spec.license}"""')
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------- standalone process
def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.support.ollama_sim", description="Ollama API simulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--models", help="comma-separated local models (default: the fixture set)")
    p.add_argument("--registry", help="comma-separated pullable models (default: a small set)")
    p.add_argument("--token-rate", type=float, default=None)
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--load-latency", type=float, default=0.0)
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("--max-queue", type=int, default=512)
    p.add_argument("--fail-after-tokens", type=int, default=None)
    p.add_argument("--die-after-tokens", type=int, default=None)
    p.add_argument("--response-tokens", type=int, default=16)
    p.add_argument("--keep-alive", default="5m")
    p.add_argument("--version", default="0.12.6")
    return p.parse_args(argv)


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [n for n in text.split(",") if n.strip()]


async def _serve(args: argparse.Namespace) -> int:
    sim = OllamaSim(
        _names(args.models),
        host=args.host,
        port=args.port,
        token_rate=args.token_rate,
        latency=args.latency,
        load_latency=args.load_latency,
        parallel=args.parallel,
        max_queue=args.max_queue,
        fail_after_tokens=args.fail_after_tokens,
        die_after_tokens=args.die_after_tokens,
        response_tokens=args.response_tokens,
        keep_alive=args.keep_alive,
        version=args.version,
        registry=_names(args.registry),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await sim.start()
    print(f"READY {sim.url}", flush=True)  # the launcher waits for this line, not for a timer
    await stop.wait()
    await sim.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(_serve(_parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
