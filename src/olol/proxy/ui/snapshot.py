"""What one dashboard update says: the cluster now, compact, built once per tick for every open page.

Hosts and models refer to each other by position (a model's `hosts` are indexes
into `hosts`), so a host id is sent once whatever number of models it holds:
that keeps an update for 50 hosts and 200 models well under 50 KB. Counters are
totals; the page turns them into rates and keeps the history for its charts.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from olol.cluster import Host
from olol.cluster.backend import JSON

if TYPE_CHECKING:
    from olol.proxy.context import ProxyContext

__all__ = ["RECENT_ROUTES", "build_snapshot"]

RECENT_ROUTES = 15  # routing decisions an update lists (the newest first)


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _best_latency(ctx: ProxyContext) -> dict[str, tuple[float | None, float | None]]:
    """Per host, its best TTFT (s) and tokens/s over its models (what it can do now), in one pass."""
    best: dict[str, tuple[float | None, float | None]] = {}
    for host, _model, stats in ctx.cluster.stats.entries():
        ttft, tps = best.get(host, (None, None))
        if stats.ttft.value is not None and (ttft is None or stats.ttft.value < ttft):
            ttft = stats.ttft.value
        if stats.tokens_per_s.value is not None and (tps is None or stats.tokens_per_s.value > tps):
            tps = stats.tokens_per_s.value
        best[host] = (ttft, tps)
    return best


def _host(host: Host, now: float, latency: tuple[float | None, float | None], cache: JSON) -> JSON:
    """One host's row; `cache` is its `CacheBook.to_json`, the very entry /api/status shows as `hosts[].cache`."""
    ttft, tps = latency
    hw = host.hardware
    entry: JSON = {
        "id": host.id,
        "kind": host.kind,
        "state": host.state,
        "for_s": round(now - host.state_since, 1),
        "load": host.load,
        "cap": host.parallel,
        "ram_free": host.ram_free,
        "ttft": _round(ttft),
        "tps": _round(tps, 1),
    }
    if hw.get("vram_total"):  # 0 from a host without a GPU: nothing to show
        entry["vram_total"], entry["vram_free"] = hw["vram_total"], hw.get("vram_free")
    if hw.get("ram_total"):
        entry["ram_total"] = hw["ram_total"]
    # Sent only when known, as the other optional fields: absent keys keep a large cluster's update small.
    if cache["hit_rate"] is not None:  # the host's own word: prompt tokens it served from its KV cache
        entry["hit"] = cache["hit_rate"]
    if cache["index_bytes"]:  # prompt text the proxy believes that cache holds (what cache_aware routes on)
        entry["idx"] = cache["index_bytes"]
    if host.last_error and host.state == "down":
        entry["err"] = host.last_error[:200]
    return entry


def _models(ctx: ProxyContext, index: dict[str, int]) -> list[JSON]:
    holders: dict[str, JSON] = {}
    wanted: dict[str, Any] = {}
    if ctx.placement is not None:
        wanted = ctx.placement.keeper.wanted()
    for host in ctx.cluster.hosts.values():
        pos = index[host.id]
        for name, tag in host.models.items():
            model = holders.get(name)
            if model is None:
                details = tag.get("details") or {}
                model = holders[name] = {
                    "name": name,
                    "q": details.get("quantization_level") or "",
                    "size": tag.get("size"),
                    "hosts": [],
                    "loaded": [],
                }
                if name in wanted:
                    model["want"] = wanted[name]
            model["hosts"].append(pos)
            if name in host.running:
                model["loaded"].append(pos)
    return [holders[name] for name in sorted(holders)]


def _traffic(ctx: ProxyContext) -> JSON:
    m = ctx.metrics
    return {
        "requests": m.requests.total(),
        "errors": m.errors.total(),
        "failovers": m.retries.total(),
        # Streams that broke after the first byte (issue 15), and those of them finished on another host.
        "resumes": m.resumes.total(),
        "resumed": m.resumes.total(outcome="resumed"),
        "queues": ctx.admission.depths(),
        "sessions": ctx.affinity.to_json()["sessions"] if ctx.affinity is not None else None,
    }


def build_snapshot(ctx: ProxyContext, split: JSON | None = None) -> JSON:
    """The whole dashboard state now; `split` is the split model's status (`DistributedModels.to_json()`)."""
    now = time.monotonic()
    hosts = list(ctx.cluster.hosts.values())
    index = {h.id: i for i, h in enumerate(hosts)}
    recent = list(ctx.metrics.recent)[-RECENT_ROUTES:]
    latency = _best_latency(ctx)
    caches = ctx.cluster.caches
    return {
        "t": round(time.time(), 3),
        "uptime_s": round(now - ctx.started_at, 1),
        "balancer": ctx.router.policy.name,
        "hosts": [_host(h, now, latency.get(h.id, (None, None)), caches.to_json(h.id)) for h in hosts],
        "models": _models(ctx, index),
        "traffic": _traffic(ctx),
        "recent": [[round(r.at, 3), r.model, r.host, r.reason, round(r.ttft_s, 4)] for r in reversed(recent)],
        "split": split,
    }
