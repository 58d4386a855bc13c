"""`/api/generate` and `/api/chat`: request checks, then a planned answer paced out as
NDJSON, with the failures hosts have mid-stream injected when a test asks for them."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Literal

from aiohttp import web

from tests.support.ollama_sim._catalogue import ModelSpec
from tests.support.ollama_sim._errors import SimError
from tests.support.ollama_sim._gotime import _now
from tests.support.ollama_sim._ndjson import _Ndjson
from tests.support.ollama_sim._plan import _make_plan, _Plan
from tests.support.ollama_sim._request import _field, _options, _stream_flag, _think_on
from tests.support.ollama_sim._scheduler import _Scheduler
from tests.support.ollama_sim._text import _rng, _token_id, _tool_calls
from tests.support.ollama_sim._wire import JSON, _json


class _GenerationRoutes(_Scheduler):
    """The two text endpoints; they differ in body shape, not in how an answer is served."""

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
                    await out.send(_chunk(kind, model, step, value))
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
                final = _final(kind, model, plan, stream, stats, prompt_tokens)
                if not stream:
                    return _json(final)
                await out.send(final)
                return await out.finish()
        except ConnectionResetError:
            # Counted by _working; the connection is gone, aiohttp discards whatever we return.
            return out.response or web.Response()

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
        plan = _make_plan(spec, f"{system}\x00{prompt}", options, think=think, fmt=fmt, tool_calls=None,
                          thinking_tokens=self.thinking_tokens, response_tokens=self.response_tokens)  # fmt: skip
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
        plan = self._continuation(spec, messages, options, think, fmt) if not calls else None
        if plan is None:
            plan = _make_plan(spec, transcript, options, think=think, fmt=fmt, tool_calls=calls,
                              thinking_tokens=self.thinking_tokens, response_tokens=self.response_tokens)  # fmt: skip
        prompt_tokens = [_token_id(word) for m in messages for word in str(m.get("content") or "").split()]
        return await self._serve_generation(
            request, kind="chat", model=model, spec=spec, plan=plan, stream=stream,
            keep_alive=keep_alive, options=options, prompt_tokens=prompt_tokens,
        )  # fmt: skip


    def _continuation(self, spec: ModelSpec, messages: list[JSON], options: JSON, think: bool,
                      fmt: Any) -> _Plan | None:
        """A final assistant message is continued, as Ollama does: the rest of the answer it starts.

        The answer it starts is the one the conversation before it gets, or (for a lone user turn)
        the one `/api/generate` gets for that prompt, which is what the template renders it as. The
        budget (`num_predict`) counts what remains, as the proxy asks when it resumes a stream.
        """
        last = messages[-1]
        prefix = str(last.get("content") or "")
        if last.get("role") != "assistant" or not prefix or len(messages) < 2:
            return None
        before = messages[:-1]
        keys = ["\n".join(f"{m.get('role', '')}: {m.get('content') or ''}" for m in before)]
        roles = [m.get("role") for m in before]
        if roles in (["user"], ["system", "user"]):
            system = str(before[0].get("content") or "") if roles[0] == "system" else ""
            keys.append(f"{system}\x00{before[-1].get('content') or ''}")
        budget = dict(options)
        limit = budget.get("num_predict")
        if isinstance(limit, int) and limit >= 0:
            budget["num_predict"] = limit + len(prefix.split())
        for key in keys:
            whole = _make_plan(spec, key, budget, think=think, fmt=fmt, tool_calls=None,
                               thinking_tokens=self.thinking_tokens, response_tokens=self.response_tokens)  # fmt: skip
            text = ""
            for index, (step, value) in enumerate(whole.steps):
                if text == prefix:
                    return _Plan(whole.steps[index:], whole.done_reason)
                if step != "content" or not prefix.startswith(text + value):
                    break
                text += value
            if text == prefix:  # the prefix was the whole answer
                return _Plan([], whole.done_reason)
        return None


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


def _final(kind: str, model: str, plan: _Plan, stream: bool, stats: JSON, prompt_tokens: list[int]) -> JSON:
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
