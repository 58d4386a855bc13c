"""The proxy as the session layer's `ChatGateway`: routing, failover and affinity for session turns.

A session's turns go through the same dispatcher as `/api/chat`, keyed for
affinity exactly as a request carrying `X-OLOL-Session: <session id>`: the
bounded-load consistent hashing pins the session to one host (its KV cache
stays warm), and when that host dies its pins are purged and the next turn is
placed afresh, with the whole history, on another.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from olol.cluster import Cluster, Host, normalize
from olol.cluster.backend import JSON
from olol.cluster.routing import RouteRequest
from olol.errors import OlolError
from olol.proxy.affinity import prefix_text, session_key
from olol.proxy.dispatch import Dispatcher, Upstream
from olol.proxy.router import Router, route_headers
from olol.sessions.trim import DEFAULT_CONTEXT

__all__ = ["ProxyChatGateway"]

log = logging.getLogger(__name__)

_ASK_TIMEOUT = 3.0  # a context-length lookup must not hold a turn up for long
_CACHE_S = 30.0  # hosts reload models with other settings rarely; re-asked after this


def _chat_call(backend: Any, body: JSON) -> AsyncIterator[JSON]:
    return backend.chat(body)  # type: ignore[no-any-return]


def _info_context(show: JSON) -> int | None:
    info = show.get("model_info") or {}
    arch = info.get("general.architecture")
    value = info.get(f"{arch}.context_length") if arch else None
    if value is None:  # some GGUFs name the architecture differently from the key prefix
        value = next((v for k, v in info.items() if str(k).endswith(".context_length")), None)
    return int(value) if isinstance(value, (int, float)) and value > 0 else None


class _Stream:
    """An `Upstream` seen as a `ChatStream`."""

    def __init__(self, upstream: Upstream) -> None:
        self._upstream = upstream
        self.host = upstream.route.host_id
        self.headers: Mapping[str, str] = route_headers(upstream.route, upstream.retries)

    def __aiter__(self) -> AsyncIterator[JSON]:
        return self._upstream.__aiter__()

    async def aclose(self) -> None:
        await self._upstream.aclose()


class ProxyChatGateway:
    def __init__(self, cluster: Cluster, router: Router, dispatcher: Dispatcher, *, affinity: bool) -> None:
        self.cluster = cluster
        self.router = router
        self.dispatcher = dispatcher
        self.affinity = affinity
        self._contexts: dict[str, tuple[float, asyncio.Future[int | None]]] = {}

    def has_model(self, model: str) -> bool:
        return bool(self.cluster.hosts_with(model, healthy_only=False) or self.router.eligible(model))

    async def open_chat(self, body: JSON, session_id: str) -> _Stream:
        key = session_key(session_id, {}) if self.affinity else None
        prefix = prefix_text(body) if self.router.prefix_aware else None
        upstream = await self.dispatcher.open_stream(
            "session_chat", RouteRequest(str(body["model"]), key, prefix), body, _chat_call
        )
        return _Stream(upstream)

    async def context_length(self, model: str) -> int | None:
        """The smallest window any host serves the model with: the session may move to any of them.

        A loaded model's window is what the host reports in /api/ps; for a model
        loaded nowhere, the host will load it with its default (Ollama's num_ctx),
        capped by what the model was trained for (/api/show).
        """
        name = normalize(model)
        cached = self._contexts.get(name)
        if cached is None or cached[0] <= time.monotonic():
            # One lookup per model at a time: a burst of turns must not each ask every host.
            cached = (time.monotonic() + _CACHE_S, asyncio.ensure_future(self._look_up(model, name)))
            self._contexts[name] = cached
        try:
            return await asyncio.shield(cached[1])
        except Exception:
            self._contexts.pop(name, None)
            return None

    async def _look_up(self, model: str, name: str) -> int | None:
        hosts = self.cluster.hosts_with(model)
        found = [n for n in await asyncio.gather(*(self._loaded_context(h, name) for h in hosts)) if n]
        return min(found) if found else await self._trained_context(model, hosts)

    async def _loaded_context(self, host: Host, name: str) -> int | None:
        entry = host.running.get(name) or {}
        if not entry.get("context_length"):
            try:
                # Agents' state feeds name loaded models without their window; their /api/ps has it.
                async with asyncio.timeout(_ASK_TIMEOUT):
                    running = await host.backend.running()
            except (OlolError, TimeoutError, OSError) as exc:
                log.debug("no context length from %s: %s", host.id, exc)
                return None
            entry = next((e for e in running if normalize(str(e.get("name") or e.get("model") or "")) == name), {})
        value = entry.get("context_length")
        return int(value) if isinstance(value, (int, float)) and value > 0 else None

    async def _trained_context(self, model: str, hosts: list[Host]) -> int | None:
        for host in hosts[:2]:
            try:
                async with asyncio.timeout(_ASK_TIMEOUT):
                    trained = _info_context(await host.backend.show({"model": model}))
            except (OlolError, TimeoutError, OSError) as exc:
                log.debug("no model info from %s: %s", host.id, exc)
                continue
            return min(trained, DEFAULT_CONTEXT) if trained else None
        return None
