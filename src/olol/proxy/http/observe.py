"""Observability endpoints: `/api/status` (JSON for `olol status`) and `/metrics` (Prometheus)."""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

import olol
from olol.discovery.proxy_side import DISCOVERY
from olol.proxy.http.io import ctx, json_reply

__all__ = ["metrics", "status"]


async def status(request: web.Request) -> web.Response:
    c = ctx(request)
    discovery = request.app.get(DISCOVERY)
    distributed = None
    if c.config.distributed.enabled:  # its module (and grpc) is loaded only when the feature is on
        from olol.proxy.distributed import DISTRIBUTED

        distributed = request.app[DISTRIBUTED].to_json()
    return json_reply({
        "version": olol.__version__,
        "uptime_s": round(time.monotonic() - c.started_at, 3),
        "balancer": c.router.policy.name,
        "quant_fallback": c.router.quant is not None,
        **c.cluster.to_json(),
        "sessions": c.affinity.to_json() if c.affinity is not None else None,
        "queues": c.admission.depths(),
        "queue_timeouts": c.admission.timeouts,
        "placements": c.placement.to_json() if c.placement is not None else None,
        # rpc-servers advertised on mDNS or registered: workers for split models, never routed to as hosts.
        "rpc_servers": discovery.rpc_targets() if discovery is not None else [],
        "distributed": distributed,
    })


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=ctx(request).metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})
