"""Native inference endpoints: /api/generate, /api/chat, /api/embed, /api/embeddings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from olol.cluster import normalize
from olol.cluster.backend import JSON, Backend
from olol.cluster.routing import RouteRequest
from olol.errors import ModelNotFound
from olol.proxy.affinity import SESSION_HEADER, SHORT_PROMPT, prefix_text, session_key
from olol.proxy.aggregate import collect_chat, collect_generate
from olol.proxy.dispatch import StreamCall, Upstream
from olol.proxy.http.io import ctx, json_reply, read_json, require_model, route_headers, wants_stream, write_ndjson
from olol.proxy.resume import ResumableStream, resume_requested
from olol.proxy.resume.settings import without_resume_option
from olol.proxy.resume.transcript import Kind

__all__ = ["Collector", "chat", "chat_call", "embed", "embed_call", "embeddings", "generate", "generate_call",
           "open_inference"]

Collector = Callable[[AsyncIterable[JSON]], Awaitable[JSON]]


def generate_call(backend: Backend, body: JSON) -> AsyncIterator[JSON]:
    return backend.generate(body)


def chat_call(backend: Backend, body: JSON) -> AsyncIterator[JSON]:
    return backend.chat(body)


async def embed_call(backend: Backend, body: JSON) -> Any:
    return await backend.embed(body)


def _route_request(request: web.Request, body: JSON, model: str) -> RouteRequest:
    context = ctx(request)
    prefix = prefix_text(body) if context.router.prefix_aware else None
    # Under a prefix-aware policy a conversation is followed by its routing text, which each turn extends;
    # its first turns, too short for the prefix index to see, keep the conversation key.
    conversations = prefix is None or len(prefix) < SHORT_PROMPT
    key = session_key(request.headers.get(SESSION_HEADER), body, conversations=conversations) \
        if context.affinity else None
    return RouteRequest(model, key, prefix)


_CALLS: dict[Kind, StreamCall] = {"generate": generate_call, "chat": chat_call}


async def open_inference(request: web.Request, endpoint: str, body: JSON,
                         call: StreamCall) -> Upstream | ResumableStream:
    """Route and start a generate/chat stream (also used by the OpenAI-compatible endpoints).

    Unless turned off (`--no-resume`, `options.resume: false`, `X-OLOL-Resume: false`), the stream
    continues on another host when its host fails after the first byte (olol.proxy.resume).
    """
    model = require_model(body)
    proxy = ctx(request)
    route_request = _route_request(request, body, model)
    resume = proxy.resume.enabled and proxy.resume.max_resumes > 0 and resume_requested(body, request.headers)
    body = without_resume_option(body)
    upstream = await proxy.dispatcher.open_stream(endpoint, route_request, body, call)
    if not resume:
        return upstream
    kind: Kind = "chat" if call is chat_call else "generate"
    return ResumableStream(proxy.dispatcher, endpoint, route_request, body, kind, _CALLS, upstream,
                           proxy.resume.max_resumes)


def _is_unload(body: JSON, text_key: str) -> bool:
    return body.get("keep_alive") in (0, "0", "0s", "0m") and not body.get(text_key)


async def _unload_everywhere(request: web.Request, body: JSON, call: StreamCall, collect: Collector) -> web.Response:
    """`keep_alive: 0` with nothing to say unloads the model: on every host that has it loaded."""
    model = require_model(body)
    hosts = [h for h in ctx(request).cluster.healthy_hosts() if h.is_loaded(model)]
    if not hosts:
        hosts = ctx(request).cluster.hosts_with(model)[:1]
    if not hosts:
        raise ModelNotFound(model)
    replies = await asyncio.gather(*(collect(call(h.backend, body)) for h in hosts), return_exceptions=True)
    for host, reply in zip(hosts, replies, strict=True):
        if isinstance(reply, dict):
            host.running.pop(normalize(model), None)
    answer = next((r for r in replies if isinstance(r, dict)), None)
    if answer is None:
        raise next(r for r in replies if isinstance(r, BaseException))
    return json_reply(answer, headers={"X-OLOL-Host": ",".join(h.id for h in hosts), "X-OLOL-Route": "unload"})


async def _serve_stream(request: web.Request, endpoint: str, call: StreamCall, collect: Collector,
                        text_key: str) -> web.StreamResponse:
    body = await read_json(request, keep_bytes=True)
    if _is_unload(body, text_key):
        return await _unload_everywhere(request, body, call, collect)
    upstream = await open_inference(request, endpoint, body, call)
    headers = route_headers(upstream.route, upstream.retries)
    try:
        if wants_stream(body):
            return await write_ndjson(request, upstream, headers)
        return json_reply(await collect(upstream), headers=headers)
    finally:
        await upstream.aclose()


async def generate(request: web.Request) -> web.StreamResponse:
    return await _serve_stream(request, "generate", generate_call, collect_generate, "prompt")


async def chat(request: web.Request) -> web.StreamResponse:
    return await _serve_stream(request, "chat", chat_call, collect_chat, "messages")


async def embed(request: web.Request) -> web.Response:
    body = await read_json(request, keep_bytes=True)
    model = require_model(body)
    route, result, retries = await ctx(request).dispatcher.unary(
        "embed", _route_request(request, body, model), body, embed_call)
    return json_reply(result, headers=route_headers(route, retries))


async def embeddings(request: web.Request) -> web.Response:
    """Legacy `/api/embeddings` (one `prompt` -> one `embedding`), served through `/api/embed`."""
    body = await read_json(request)
    model = require_model(body)
    prompt = body.get("prompt") or ""
    if not prompt:
        # Ollama answers an empty prompt with an empty vector, once it knows the model.
        if not ctx(request).router.eligible(model):
            raise ModelNotFound(model)
        return json_reply({"embedding": []})
    native: JSON = {"model": model, "input": prompt, "truncate": True}
    for key in ("options", "keep_alive"):
        if key in body:
            native[key] = body[key]
    route, result, retries = await ctx(request).dispatcher.unary(
        "embeddings", _route_request(request, body, model), native, embed_call)
    vectors = result.get("embeddings") or [[]]
    return json_reply({"embedding": vectors[0]}, headers=route_headers(route, retries))
