"""Cluster views: `/`, `/api/version`, `/api/tags`, `/api/ps`, `/api/show`.

Tags and ps are merged across hosts and each model says where it is, in an
extra `olol` field that Ollama clients ignore: `{"olol": {"hosts": [...]}}`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

from aiohttp import web

import olol
from olol.cluster import Host, normalize
from olol.cluster.backend import JSON
from olol.cluster.fanout import fan_out
from olol.errors import ModelNotFound, OlolError
from olol.proxy.http.io import ctx, json_reply, read_json, require_model

__all__ = ["merged_models", "ps", "root", "show", "tags", "version"]

# A listing must not hang on one slow host; it answers with what the others said.
_LIST_TIMEOUT = 5.0


def _merge(per_host: dict[str, list[JSON]]) -> list[JSON]:
    merged: dict[str, JSON] = {}
    for host_id, entries in per_host.items():
        for entry in entries:
            name = normalize(str(entry.get("name") or entry.get("model") or ""))
            if name not in merged:
                merged[name] = {**entry, "olol": {"hosts": []}}
            merged[name]["olol"]["hosts"].append(host_id)
    return list(merged.values())


async def merged_models(request: web.Request, running: bool = False) -> list[JSON]:
    """Live /api/tags (or /api/ps) of every healthy host, merged; refreshes the cluster's view too."""
    hosts = ctx(request).cluster.healthy_hosts()

    async def ask(host: Host) -> list[JSON]:
        call: Callable[[], Awaitable[list[JSON]]] = host.backend.running if running else host.backend.list_models
        async with asyncio.timeout(_LIST_TIMEOUT):
            entries = await call()
        (host.set_running if running else host.set_models)(entries)
        return entries

    result = await fan_out(hosts, ask)
    return _merge(result.ok)


async def root(_request: web.Request) -> web.Response:
    return web.Response(text="Ollama is running")


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", version)[:3]) or (0,)


async def version(request: web.Request) -> web.Response:
    """The oldest Ollama API in the cluster, what every host can be relied on to support: an Ollama
    host's own version, and for the others (llama.cpp) the Ollama release OLOL implements for them.
    OLOL's own version is under `olol`."""
    versions = [
        h.version if h.kind == "ollama" and h.version else olol.OLLAMA_API_VERSION
        for h in ctx(request).cluster.healthy_hosts()
    ]
    reported = min(versions, key=_version_key) if versions else olol.OLLAMA_API_VERSION
    return json_reply({"version": reported, "olol": {"version": olol.__version__}})


async def tags(request: web.Request) -> web.Response:
    return json_reply({"models": await merged_models(request)})


async def ps(request: web.Request) -> web.Response:
    return json_reply({"models": await merged_models(request, running=True)})


async def show(request: web.Request) -> web.Response:
    """Answered by the first host that has the model; the next is asked if that one fails."""
    body = await read_json(request)
    model = require_model(body)
    hosts = sorted(ctx(request).cluster.hosts_with(model), key=lambda h: (not h.is_loaded(model), h.load))
    last: OlolError = ModelNotFound(model)
    for host in hosts:
        try:
            reply = await host.backend.show(body)
        except OlolError as exc:
            last = exc
            continue
        return json_reply(reply, headers={"X-OLOL-Host": host.id})
    raise last
