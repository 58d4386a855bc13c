"""Ollama's OpenAI-compatible endpoints (`/v1/...`), served through the native ones."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from olol.cluster import normalize
from olol.cluster.backend import JSON
from olol.cluster.routing import RouteRequest
from olol.errors import ModelNotFound, OlolError
from olol.proxy.aggregate import collect_chat, collect_generate
from olol.proxy.dispatch import StreamCall, Upstream
from olol.proxy.http.inference import Collector, chat_call, embed_call, generate_call, open_inference
from olol.proxy.http.io import ctx, dumps, json_reply, read_json, require_model, route_headers
from olol.proxy.http.views import merged_models
from olol.proxy.openai import requests as oai_in
from olol.proxy.openai import responses as oai_out
from olol.proxy.resume import ResumableStream

__all__ = ["chat_completions", "completions", "embeddings", "model", "models"]

SSE = "text/event-stream"


async def _write_sse(request: web.Request, upstream: Upstream | ResumableStream,
                     events: AsyncIterator[JSON]) -> web.StreamResponse:
    response = web.StreamResponse(status=200, headers={
        "Content-Type": SSE, "Cache-Control": "no-cache", **route_headers(upstream.route, upstream.retries)})
    await response.prepare(request)
    try:
        async for event in events:
            await response.write(b"data: " + dumps(event) + b"\n\n")
    except OlolError as exc:
        await response.write(b"data: " + dumps(oai_out.error_body(exc.status, exc.message)) + b"\n\n")
    else:
        await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def _serve(request: web.Request, endpoint: str, native: JSON, call: StreamCall, collect: Collector,
                 reply: Callable[[JSON], JSON], events: Callable[[JSON], list[JSON]]) -> web.StreamResponse:
    """Run a native stream; answer its folded reply as one object, or its chunks as SSE events."""
    upstream = await open_inference(request, endpoint, native, call)
    try:
        if not native["stream"]:
            return json_reply(reply(await collect(upstream)), headers=route_headers(upstream.route, upstream.retries))

        async def translated() -> AsyncIterator[JSON]:
            async for chunk in upstream:
                for event in events(chunk):
                    yield event

        return await _write_sse(request, upstream, translated())
    finally:
        await upstream.aclose()


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = await read_json(request)
    require_model(body)
    cid, created = oai_out.new_id("chatcmpl"), int(time.time())
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    state = oai_out.ChatStreamState(cid, created, include_usage)
    return await _serve(request, "v1_chat", oai_in.chat_request(body), chat_call, collect_chat,
                        lambda r: oai_out.chat_completion(r, cid, created), state.chunks)


async def completions(request: web.Request) -> web.StreamResponse:
    body = await read_json(request)
    require_model(body)
    cid, created = oai_out.new_id("cmpl"), int(time.time())
    return await _serve(request, "v1_completions", oai_in.completion_request(body), generate_call, collect_generate,
                        lambda r: oai_out.completion(r, cid, created),
                        lambda c: [oai_out.completion_chunk(c, cid, created)])


async def embeddings(request: web.Request) -> web.Response:
    body = await read_json(request)
    model = require_model(body)
    native = oai_in.embed_request(body)
    route, reply, retries = await ctx(request).dispatcher.unary(
        "v1_embeddings", RouteRequest(model), native, embed_call)
    encoding = body.get("encoding_format")
    return json_reply(oai_out.embeddings(reply, model, encoding if isinstance(encoding, str) else None),
                      headers=route_headers(route, retries))


async def models(request: web.Request) -> web.Response:
    entries = await merged_models(request)
    return json_reply({"object": "list", "data": [oai_out.model_object(e) for e in entries]})


async def model(request: web.Request) -> web.Response:
    name = request.match_info["model"]
    for entry in await merged_models(request):
        if normalize(str(entry.get("name") or entry.get("model") or "")) == normalize(name):
            return json_reply(oai_out.model_object(entry))
    raise ModelNotFound(name)
