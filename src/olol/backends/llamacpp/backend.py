"""The llama.cpp backend: Ollama-shaped requests served by one `llama-server`.

Either attach to a running server (`url=`) or launch and supervise one
(`model_path=`, see `olol.backends.llamacpp.process`). One server serves one model;
its Ollama name is `model_name`, else the alias, else the file's stem
(`tiny.gguf` -> `tiny:latest`).

Endpoint choices, and why:

* generate -> native `/completion` (SSE). It reports `stop_type`, `truncated`
  and `timings` directly. Unless `raw`, the prompt (and `system`) is first put
  through the model's own chat template via `/apply-template`, which is what
  Ollama does with a model's template; `raw` sends the prompt byte for byte.
  Ollama's Go `template` override and `suffix` have no llama.cpp equivalent and
  are rejected rather than silently ignored.
* chat -> `/v1/chat/completions` (SSE). llama-server applies the template,
  parses tool calls and reasoning with its Jinja engine, and puts `timings` on
  the last chunk, so stats are real (the tests check greedy parity with
  llama-server's own chat answers). Tools pass through as they are (they need
  a tool-capable template; llama-server runs Jinja by default). `format` maps
  to `response_format` (JSON object or JSON schema).
* embed -> `/v1/embeddings` (pooled, L2-normalised, as Ollama returns them).

Closing a stream early closes the HTTP connection; llama-server notices on its
next write and frees the slot (tests check `/slots`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from olol.backends.llamacpp import convert
from olol.backends.llamacpp.chat_window import fit_chat, surely_fits
from olol.backends.llamacpp.client import LlamaServerClient
from olol.backends.llamacpp.continuation import (
    TokenIds,
    as_chat_chunk,
    completion_prompt,
    plain_chat,
    template_messages,
)
from olol.backends.llamacpp.gguf_info import ModelFile, human_parameters, read_model_file, sha256_file
from olol.backends.llamacpp.process import LlamaServerConfig, LlamaServerProcess
from olol.cluster.backend import JSON, Backend, BackendInfo
from olol.errors import BadRequest, ModelNotFound, OlolError

__all__ = ["LlamaCppBackend", "supports_thinking"]

_FINAL_FIELDS = ("content", "stop", "stop_type", "truncated", "timings", "tokens_predicted", "tokens_evaluated")


def supports_thinking(props: JSON) -> bool:
    """Ollama's "thinking" capability for a llama-server: its chat template renders reasoning.

    Ollama asks whether the template uses `.Thinking`; llama-server's /props has no such flag, so the
    template is read for what reasoning templates contain (`enable_thinking`, `<think>`, `message.thinking`,
    `reasoning_content`, gpt-oss's `<|channel|>`)."""
    caps = props.get("chat_template_caps") or {}
    if "supports_thinking" in caps:  # newer llama.cpp builds may say so themselves
        return bool(caps["supports_thinking"])
    template = str(props.get("chat_template") or "").lower()
    return any(marker in template for marker in ("think", "reasoning", "<|channel|>"))


class LlamaCppBackend(Backend):
    kind = "llamacpp"

    def __init__(
        self,
        *,
        url: str | None = None,
        model_path: str | PathLike[str] | None = None,
        model_name: str | None = None,
        ctx_size: int = 2048,
        threads: int | None = None,
        parallel: int = 4,
        embeddings: bool = True,
        extra_args: Sequence[str] = (),
        server_bin: str | PathLike[str] | None = None,
        ready_timeout: float = 120.0,
        server: LlamaServerConfig | None = None,
        connect_timeout: float = 10.0,
        digest: str | None = None,
    ) -> None:
        """Attach to `url`, or launch llama-server for `model_path`.

        With `url`, `model_path` (if given) only supplies metadata (size, digest,
        `model_info`); without it they come from the server. Without `url`, a
        supervised llama-server is launched on first use (or `start()`) with
        `ctx_size` (per slot), `threads`, `parallel` (slots), `embeddings`,
        `extra_args` and `server_bin` (None: `olol.backends.llamacpp.find_llama_server()`);
        pass `server` instead for every knob of `LlamaServerConfig`.
        `model_name` defaults to the alias, then the file stem, then `/v1/models`.
        `digest` is reported as the model's digest instead of hashing the file (which takes minutes for a
        large model; an Ollama blob's name is its digest).
        One backend serves one model; a host serving a directory of them, each
        loaded on demand, is `olol.backends.llamacpp.host.LlamaHostBackend`.
        """
        if url is None and model_path is None and server is None:
            raise ValueError("LlamaCppBackend needs url=, model_path= or server=")
        path = Path(model_path) if model_path is not None else (server.model_path if server else None)
        name = model_name or (server.alias if server else None) or (path.stem if path else None)
        self._name = convert.normalize_model_name(name) if name else None
        self._url = url.rstrip("/") if url else None
        self._path = path
        self._embeddings = server.embeddings if server else embeddings
        self._config = None
        if url is None:
            assert path is not None
            self._config = server or LlamaServerConfig(
                model_path=path,
                ctx_size=ctx_size,
                threads=threads,
                parallel=parallel,
                embeddings=embeddings,
                extra_args=tuple(extra_args),
                binary=Path(server_bin) if server_bin is not None else None,
                ready_timeout=ready_timeout,
            )
        self._process: LlamaServerProcess | None = None
        self._client = LlamaServerClient(self._base, connect_timeout=connect_timeout, diagnose=self._diagnose)
        self._start_lock = asyncio.Lock()
        self._props: JSON | None = None
        self._file: ModelFile | None = None
        self._digest: str | None = digest

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        async with self._start_lock:
            await self._client.open()
            if self._config is not None and self._process is None:
                alias = self._config.alias or self._name
                self._process = LlamaServerProcess(dataclasses.replace(self._config, alias=alias))
                try:
                    await self._process.start()
                except BaseException:
                    self._process = None
                    raise

    async def close(self) -> None:
        await self._client.close()
        if self._process is not None:
            await self._process.close()
            self._process = None

    @property
    def process(self) -> LlamaServerProcess | None:
        """The supervised llama-server, when this backend launched one."""
        return self._process

    # ------------------------------------------------------------------ plumbing
    def _base(self) -> str:
        return self._process.url if self._process is not None else str(self._url)

    def _diagnose(self) -> str:
        if self._process is not None and not self._process.running:
            return f"llama-server is not running; its log ends with:\n{self._process.log_tail(10)}"
        return ""

    async def _ready(self) -> int:
        """Make sure the server can take a request; returns ns spent waiting (load time)."""
        if not self._client.is_open or (self._config is not None and self._process is None):
            await self.start()
        if self._process is None or self._process.ready:
            return 0
        t0 = time.perf_counter_ns()
        await self._process.wait_ready()
        return time.perf_counter_ns() - t0

    async def _json(self, method: str, path: str, body: JSON | None = None) -> Any:
        await self._ready()
        return await self._client.json(method, path, body)

    async def _get_props(self, *, fresh: bool = False) -> JSON:
        if self._props is None or fresh:
            self._props = await self._json("GET", "/props")
        return self._props

    # ------------------------------------------------------------------ model identity
    async def _model_name(self) -> str:
        if self._name is None:
            models = await self._json("GET", "/v1/models")
            model_id = str(models["data"][0]["id"])
            # Without --alias the id is the -m path; its stem is the human name.
            self._name = convert.normalize_model_name(Path(model_id).stem if model_id.endswith(".gguf") else model_id)
        return self._name

    async def _check_model(self, request: JSON) -> str:
        requested = request.get("model")
        if not requested or not isinstance(requested, str):
            raise BadRequest("model is required")
        name = await self._model_name()
        if convert.normalize_model_name(requested) != name:
            raise ModelNotFound(requested)
        return name

    @contextlib.asynccontextmanager
    async def _serving(self, request: JSON) -> AsyncIterator[str]:
        """The requested model's name, once it is known to be the one this server serves."""
        yield await self._check_model(request)

    async def _has_own_template(self) -> bool:
        """Whether the GGUF carries a chat template. A base model (Gemma 3 270M) has none: Ollama gives such a
        model the template `{{ .Prompt }}`, so /api/generate sends its prompt as written; the built-in template
        llama-server is started with for it serves /api/chat only."""
        file = await self._model_file()
        return file is None or file.chat_template is not None

    async def _model_file(self, *, verbose: bool = False) -> ModelFile | None:
        if self._path is None:
            props_path = (await self._get_props()).get("model_path")
            if props_path and Path(props_path).is_file():  # a server on this host
                self._path = Path(props_path)
        if self._path is None or not self._path.is_file():
            return None
        if verbose:
            return await asyncio.to_thread(read_model_file, self._path, verbose=True)
        if self._file is None:
            self._file = await asyncio.to_thread(read_model_file, self._path)
        return self._file

    async def _file_digest(self) -> str:
        if self._digest is None and self._path is not None and self._path.is_file():
            self._digest = await asyncio.to_thread(sha256_file, self._path)
        return self._digest or ""

    # ------------------------------------------------------------------ inference
    def _done_loading(self, name: str, request: JSON, body: JSON) -> JSON:
        # Ollama answers an empty prompt by (un)loading; the one model is always loaded.
        reason = "unload" if request.get("keep_alive") in (0, "0", "0s") else "load"
        return {"model": name, "created_at": convert.rfc3339(), **body, "done": True, "done_reason": reason}

    async def generate(self, request: JSON) -> AsyncGenerator[JSON, None]:
        async with self._serving(request) as name, contextlib.aclosing(self._generate(request, name)) as stream:
            async for line in stream:
                yield line

    async def _generate(self, request: JSON, name: str) -> AsyncGenerator[JSON, None]:
        t0 = time.perf_counter_ns()
        for field, why in (
            ("suffix", "fill-in-the-middle"),
            ("template", "Go template overrides"),
            ("images", "images"),
        ):
            if request.get(field):
                raise BadRequest(f"{why} ({field}) not supported by the llama.cpp backend in /api/generate")
        load_ns = await self._ready()
        await self._check_think(request)
        prompt = request.get("prompt") or ""
        if not prompt:
            yield self._done_loading(name, request, {"response": ""})
            return
        if not request.get("raw") and await self._has_own_template():
            system = request.get("system")
            messages = [{"role": "system", "content": system}] if system else []
            messages.append({"role": "user", "content": prompt})
            prompt = (await self._json("POST", "/apply-template", {"messages": messages}))["prompt"]
        body = {
            "prompt": completion_prompt(prompt, request),  # a resume continues after the ids generated so far
            "stream": True,
            "return_tokens": True,  # the ids go with each chunk, so another host can resume exactly
            "cache_prompt": True,  # reuse the slot's KV cache for a shared prefix (cache-aware routing counts on it)
            # The final event otherwise echoes the prompt and every setting back.
            "response_fields": list(_FINAL_FIELDS),
            **convert.sampling_params(request.get("options")),
        }
        body.update(convert.format_params(request.get("format"), chat=False))
        final: JSON | None = None
        response: list[str] = []
        ids = TokenIds()
        async with contextlib.aclosing(self._client.events("/completion", body)) as events:
            async for event in events:
                ids.take(event)
                if text := event.get("content"):
                    response.append(text)
                    yield ids.attach({"model": name, "created_at": convert.rfc3339(), "response": text,
                                      "done": False})
                if event.get("stop"):
                    final = event
        if final is None:
            raise self._client.cut_short()
        reason = convert.done_reason(stop_type=final.get("stop_type"), truncated=bool(final.get("truncated")))
        stats = convert.final_stats(final.get("timings", {}), total_ns=time.perf_counter_ns() - t0, load_ns=load_ns)
        yield {
            "model": name,
            "created_at": convert.rfc3339(),
            "response": "",
            "done": True,
            "done_reason": reason,
            # Ollama's `context`: the prompt and the reply as tokens, for a client to send back next time.
            "context": [] if request.get("raw") else await self._tokenize(prompt + "".join(response)),
            **stats,
        }

    async def chat(self, request: JSON) -> AsyncGenerator[JSON, None]:
        async with self._serving(request) as name, contextlib.aclosing(self._chat(request, name)) as stream:
            async for line in stream:
                yield line

    async def _chat(self, request: JSON, name: str) -> AsyncGenerator[JSON, None]:
        t0 = time.perf_counter_ns()
        load_ns = await self._ready()
        messages = request.get("messages") or []
        if not messages:
            yield self._done_loading(name, request, {"message": {"role": "assistant", "content": ""}})
            return
        await self._check_think(request)
        props = await self._get_props()
        vision = bool(props.get("modalities", {}).get("vision"))
        sent, trimmed = await self._fit(convert.chat_messages(messages, vision=vision), request)
        if plain_chat(request, props):
            async with contextlib.aclosing(self._chat_by_completion(request, name, sent, trimmed)) as plain:
                async for chunk in plain:
                    yield chunk
            return
        body: JSON = {
            "messages": sent,
            "stream": True,
            "cache_prompt": True,
            "stream_options": {"include_usage": True},
            **convert.sampling_params(request.get("options")),
            **convert.format_params(request.get("format"), chat=True),
        }
        if request.get("tools"):
            body["tools"] = request["tools"]
        if request.get("think") is not None:
            body["chat_template_kwargs"] = {"enable_thinking": bool(request["think"])}
        tools = convert.ToolCallAccumulator()
        finish: str | None = None
        timings: JSON = {}
        async with contextlib.aclosing(self._client.events("/v1/chat/completions", body)) as events:
            async for event in events:
                timings = event.get("timings", timings)
                for choice in event.get("choices") or []:
                    delta = choice.get("delta") or {}
                    tools.add(delta.get("tool_calls") or [])
                    finish = choice.get("finish_reason") or finish
                    if delta.get("content") or delta.get("reasoning_content"):
                        message = {"role": "assistant", "content": delta.get("content") or ""}
                        if delta.get("reasoning_content"):
                            message["thinking"] = delta["reasoning_content"]
                        yield {"model": name, "created_at": convert.rfc3339(), "message": message, "done": False}
        if finish is None:
            raise self._client.cut_short()
        if calls := tools.ollama():
            message = {"role": "assistant", "content": "", "tool_calls": calls}
            yield {"model": name, "created_at": convert.rfc3339(), "message": message, "done": False}
        stats = convert.final_stats(timings, total_ns=time.perf_counter_ns() - t0, load_ns=load_ns)
        yield {
            "model": name,
            "created_at": convert.rfc3339(),
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": convert.done_reason(finish_reason=finish),
            **stats,
            **({"olol": {"trimmed": trimmed}} if trimmed else {}),
        }

    async def _check_think(self, request: JSON) -> None:
        """Ollama refuses `think` on a model whose template cannot think, instead of ignoring it."""
        think = request.get("think")
        if think is None or think is False or think == "":
            return
        if not supports_thinking(await self._get_props()):
            raise BadRequest(f"{json.dumps(str(request.get('model', '')))} does not support thinking")

    async def _tokenize(self, text: str) -> list[int]:
        data = await self._json("POST", "/tokenize", {"content": text, "add_special": True})
        return [int(t) for t in data.get("tokens") or []]

    async def _fit(self, messages: list[JSON], request: JSON) -> tuple[list[JSON], int]:
        """The chat trimmed to the slot's context as Ollama trims it (unless `truncate: false`), and how many
        messages were left out."""
        n_ctx = int((await self._get_props()).get("default_generation_settings", {}).get("n_ctx") or 0)
        tools = request.get("tools")
        if not n_ctx or request.get("truncate") is False or surely_fits(messages, tools, n_ctx):
            return messages, 0

        async def count(window: list[JSON]) -> int:
            body: JSON = {"messages": window, **({"tools": tools} if tools else {})}
            prompt = (await self._json("POST", "/apply-template", body))["prompt"]
            return len(await self._tokenize(prompt))

        return await fit_chat(messages, n_ctx, count)

    async def _chat_by_completion(self, request: JSON, name: str, messages: list[JSON],
                                  trimmed: int) -> AsyncGenerator[JSON, None]:
        """A plain chat as the template plus `/completion`, so its chunks carry token ids (see .continuation)."""
        shown = template_messages({**request, "messages": messages})
        rendered = await self._json("POST", "/apply-template", {"messages": shown})
        generate = {**request, "prompt": rendered["prompt"], "raw": True}
        async with contextlib.aclosing(self._generate(generate, name)) as stream:
            async for chunk in stream:
                out = as_chat_chunk(chunk)
                if trimmed and out.get("done"):
                    out["olol"] = {"trimmed": trimmed}
                yield out

    async def embed(self, request: JSON) -> JSON:
        async with self._serving(request) as name:
            return await self._embed(request, name)

    async def _embed(self, request: JSON, name: str) -> JSON:
        t0 = time.perf_counter_ns()
        inputs = request.get("input")
        if inputs is None or inputs == "":
            inputs = []
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not all(isinstance(text, str) for text in inputs):
            raise BadRequest("input must be a string or a list of strings")
        load_ns = await self._ready()
        vectors: list[list[float]] = []
        prompt_tokens = 0
        if inputs:
            data = await self._json("POST", "/v1/embeddings", {"input": inputs, "encoding_format": "float"})
            vectors = [item["embedding"] for item in sorted(data["data"], key=lambda item: item["index"])]
            prompt_tokens = int(data.get("usage", {}).get("prompt_tokens", 0))
        if dims := request.get("dimensions"):
            # Ollama truncates to `dimensions` and re-normalises.
            cut = np.asarray(vectors, dtype=np.float64).reshape(len(vectors), -1)[:, : int(dims)]
            norms = np.linalg.norm(cut, axis=1, keepdims=True)
            vectors = (cut / np.where(norms == 0, 1, norms)).tolist()
        return {
            "model": name,
            "embeddings": vectors,
            "total_duration": time.perf_counter_ns() - t0,
            "load_duration": load_ns,
            "prompt_eval_count": prompt_tokens,
        }

    # ------------------------------------------------------------------ models
    async def _entry(self) -> JSON:
        name = await self._model_name()
        file = await self._model_file()
        if file is not None:
            size, modified, details = file.size, file.modified_at, file.details()
        else:  # a remote server: only what /v1/models tells
            meta = (await self._json("GET", "/v1/models"))["data"][0].get("meta") or {}
            size, modified = int(meta.get("size", 0)), convert.rfc3339()
            details = {
                "parent_model": "",
                "format": "gguf",
                "family": "",
                "families": None,
                "parameter_size": human_parameters(int(meta.get("n_params", 0))),
                "quantization_level": str(meta.get("ftype", "")),
            }
        digest = await self._file_digest()
        return {
            "name": name,
            "model": name,
            "modified_at": modified,
            "size": size,
            "digest": digest,
            "details": details,
        }

    async def list_models(self) -> list[JSON]:
        return [await self._entry()]

    async def running(self) -> list[JSON]:
        entry = await self._entry()
        n_ctx = (await self._get_props()).get("default_generation_settings", {}).get("n_ctx", 0)
        # CPU builds hold nothing in VRAM; llama-server does not report offload sizes.
        return [{**entry, "expires_at": convert.far_future(), "size_vram": 0, "context_length": n_ctx}]

    async def show(self, request: JSON) -> JSON:
        await self._check_model(request)
        props = await self._get_props()
        file = await self._model_file(verbose=bool(request.get("verbose")))
        entry = await self._entry()
        caps = props.get("chat_template_caps") or {}
        capabilities = ["completion"]
        capabilities += ["embedding"] if self._embeddings else []
        capabilities += ["tools"] if caps.get("supports_tools") else []
        capabilities += ["vision"] if props.get("modalities", {}).get("vision") else []
        capabilities += ["thinking"] if supports_thinking(props) else []
        path = file.path if file else props.get("model_path", "")
        return {
            "modelfile": f"# Modelfile generated by olol (llama.cpp backend)\nFROM {path}\n",
            "parameters": "",
            "template": props.get("chat_template", ""),
            "details": entry["details"],
            "model_info": file.model_info if file else {},
            "capabilities": capabilities,
            "modified_at": entry["modified_at"],
        }

    # ------------------------------------------------------------------ status
    async def info(self) -> BackendInfo:
        props = await self._get_props(fresh=True)
        extra: JSON = {
            "model": await self._model_name(),
            "model_path": props.get("model_path", ""),
            "n_ctx": props.get("default_generation_settings", {}).get("n_ctx", 0),
        }
        if self._process is not None:
            extra.update(pid=self._process.pid, restarts=self._process.restarts)
        return BackendInfo(
            kind=self.kind,
            version=str(props.get("build_info", "")),
            url=self._base(),
            parallel=int(props.get("total_slots", 1)),
            extra=extra,
        )

    @property
    def loading(self) -> bool:
        """The supervised llama-server is up but still loading its model (it answers 503 until ready)."""
        return self._process is not None and self._process.running and not self._process.ready

    async def healthy(self) -> bool:
        if self._config is not None and (self._process is None or not self._process.ready):
            return False  # not started, restarting, or given up
        try:
            await self._json("GET", "/health")
        except OlolError:
            return False
        return True
