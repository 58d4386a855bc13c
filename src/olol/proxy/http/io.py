"""Reading requests and writing replies the way Ollama does.

Ollama answers `application/json` for single objects and `application/x-ndjson`
for streams, one compact JSON object a line; an error after the stream started
is the last line, `{"error": ...}`, with the status already sent (200).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, Mapping
from typing import Any

from aiohttp import web

from olol.cluster.backend import JSON
from olol.errors import BadRequest, OlolError
from olol.proxy.context import CONTEXT, ProxyContext
from olol.proxy.router import route_headers
from olol.security.http import PARSED_BODY, RAW_BODY
from olol.wire.json_errors import go_syntax_error
from olol.wire.raw import RawChunk, raw_bytes

__all__ = [
    "NDJSON",
    "ctx",
    "dumps",
    "json_reply",
    "read_json",
    "require_model",
    "route_headers",
    "wants_stream",
    "write_ndjson",
]

NDJSON = "application/x-ndjson"


def ctx(request: web.Request) -> ProxyContext:
    return request.app[CONTEXT]


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


async def read_json(request: web.Request, *, keep_bytes: bool = False) -> JSON:
    """The request's JSON object; with `keep_bytes`, as a `RawChunk` holding the bytes it came as.

    Those bytes go upstream as they are when nothing changes the object on its way (see
    `olol.wire.raw`); only handlers that pass the body on without changing it in place ask for them.
    The gate keeps them for small bodies only: a large one is encoded again when it is sent, rather
    than held twice (as bytes and as the object) for as long as its request lives.
    """
    body = request.get(PARSED_BODY)  # the HTTP guard decoded (and checked) it already
    if body is not None:
        raw = request.get(RAW_BODY) if keep_bytes else None
    else:
        raw = await request.read()
        if not raw.strip():
            raise BadRequest("missing request body")
        try:
            body = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise BadRequest(go_syntax_error(exc)) from None
        except ValueError:  # undecodable bytes, or an integer past Python's digit cap
            raise BadRequest("invalid JSON: undecodable text or a number too long") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return RawChunk.of(body, raw) if keep_bytes and raw is not None else body


def require_model(body: JSON, key: str = "model") -> str:
    model = body.get(key) or (body.get("name") if key == "model" else None)  # `name` is the old spelling
    if not isinstance(model, str) or not model.strip():
        raise BadRequest(f"{key} is required")
    return model


def wants_stream(body: JSON) -> bool:
    return body.get("stream") is not False


def json_reply(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    raw = raw_bytes(obj)  # a host's whole reply, unchanged: sent as it came
    return web.Response(body=dumps(obj) if raw is None else raw, status=status, headers=headers,
                        content_type="application/json", charset="utf-8")


async def write_ndjson(request: web.Request, chunks: AsyncIterable[JSON],
                       headers: Mapping[str, str] | None = None) -> web.StreamResponse:
    """Stream chunks as NDJSON; a failure after the first line becomes a final error line.

    The caller closes the source (client disconnects surface here as a reset while writing).
    """
    response = web.StreamResponse(status=200, headers={"Content-Type": NDJSON, **(headers or {})})
    await response.prepare(request)
    ended = False
    hider = ctx(request).hider
    try:
        async for chunk in chunks:
            if ended:
                continue  # nothing follows the final line; the source still runs to its end
            if hider is not None and "status" in chunk:
                chunk = hider.json(chunk)  # a management feed's line (inference chunks have no status)
            raw = raw_bytes(chunk)  # a host's line that nothing changed: relayed as it came
            line = (dumps(chunk) if raw is None else raw) + b"\n"
            if chunk.get("done"):
                # The final line and the end of the body in one write: a send (and a client wake-up) less.
                await response.write_eof(line)
                ended = True
            else:
                await response.write(line)
    except OlolError as exc:
        if not ended:  # after the final line the client has its whole reply; the error is only logged
            message = exc.message if hider is None else hider.text(exc.message)
            await response.write(dumps({"error": message}) + b"\n")
    await response.write_eof()
    return response
