"""Starting a proxy over simulators for a test, always stopped afterwards."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from olol.proxy import ProxyConfig, RunningProxy, start_proxy
from tests.support.ollama_sim import OllamaSim


@asynccontextmanager
async def proxy_over(*hosts: OllamaSim | str, **settings: Any) -> AsyncIterator[RunningProxy]:
    servers = [h if isinstance(h, str) else h.url for h in hosts]
    settings.setdefault("probe_interval", 0.2)  # fast detection keeps failure tests short
    quant = settings.pop("quant", None)
    proxy = await start_proxy(ProxyConfig(host="127.0.0.1", port=0, servers=servers, **settings), quant=quant)
    try:
        yield proxy
    finally:
        await proxy.stop()


async def ndjson(resp: aiohttp.ClientResponse) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (await resp.read()).splitlines() if line.strip()]


def served_by(sims: list[OllamaSim], route: str = "/api/chat") -> list[int]:
    return [s.requests[route] for s in sims]
