"""`/api/pull` with placement: replicas, smart quantization, LAN copies, a minimum replica count.

Beyond Ollama's body (`model`, `insecure`, `stream`) it takes, all optional:
`replicas` (hosts to place on; else the `X-OLOL-Replicas` header, else the
proxy's `--replicas`, else every healthy host), `quantize` (a level such as
`q5_0`), `min_replicas` (keep at least this many healthy copies from now on)
and `hosts` (place exactly there). The reply is Ollama's pull stream; see
`olol.placement.replicate` for what the `olol` fields on its lines say.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from aiohttp import web

from olol.cluster.backend import JSON
from olol.errors import BadRequest
from olol.proxy.http import manage
from olol.proxy.http.io import ctx, read_json, require_model

__all__ = ["pull"]


def _count(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise BadRequest(f"{name} must be an integer")
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None
    if number < 1:
        raise BadRequest(f"{name} must be at least 1")
    return number


async def _primed(feed: AsyncGenerator[JSON, None]) -> AsyncGenerator[JSON, None]:
    """The feed with its first line already read, so errors before any progress keep their HTTP status."""
    first = await anext(feed)

    async def chained() -> AsyncGenerator[JSON, None]:
        try:
            yield first
            async for line in feed:
                yield line
        finally:
            await feed.aclose()

    return chained()


async def pull(request: web.Request) -> web.StreamResponse:
    placement = ctx(request).placement
    if placement is None:
        return await manage.pull(request)
    body = await read_json(request)
    model = require_model(body)
    replicas = (
        _count(body.get("replicas"), "replicas")
        or _count(request.headers.get(manage.REPLICAS_HEADER), manage.REPLICAS_HEADER)
        or ctx(request).config.replicas
    )
    minimum = _count(body.get("min_replicas"), "min_replicas")
    if minimum is not None:
        placement.keeper.set_policy(model, minimum)
        replicas = max(replicas or 0, minimum)
    quantize = body.get("quantize")
    if quantize is not None and not isinstance(quantize, str):
        raise BadRequest("quantize must be a string such as q5_0")
    hosts = body.get("hosts") or []
    if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
        raise BadRequest("hosts must be a list of server specs")
    feed = placement.place(model, replicas=replicas, quantize=quantize or None, hosts=hosts)
    return await manage._reply_feed(request, body, await _primed(feed), {"X-OLOL-Model": model})
