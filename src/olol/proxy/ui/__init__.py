"""The dashboard at `/ui/`: hosts, models, traffic, a playground and operator actions, live.

`install_ui(app, ctx, api)` is the one hook the proxy calls (it adds the page's rows to the proxy's route
table: the page itself is open, its data feed needs a key that may read); everything the page
needs (HTML, JavaScript, CSS, uPlot) ships in `static/` as package data, so it
works from a wheel or the one-file binary with no network and no build step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from olol.proxy.api.table import Route, RouteTable, Scope
from olol.proxy.ui.feed import DashboardFeed
from olol.proxy.ui.routes import FEED, events, index, redirect, static
from olol.proxy.ui.snapshot import build_snapshot

if TYPE_CHECKING:
    from olol.proxy.context import ProxyContext

__all__ = ["UPDATE_INTERVAL", "install_ui", "ui_url"]

UPDATE_INTERVAL = 1.0  # seconds between updates: the most the issue allows, and enough to follow a cluster


def ui_url(proxy_url: str) -> str:
    return proxy_url.rstrip("/") + "/ui/"


def install_ui(
    app: web.Application, ctx: ProxyContext, api: RouteTable, *, interval: float = UPDATE_INTERVAL
) -> None:
    def build() -> dict[str, Any]:
        split = None
        if ctx.config.distributed.enabled:  # its module (and grpc) is loaded only when the feature is on
            from olol.proxy.distributed import DISTRIBUTED

            split = (app[DISTRIBUTED].to_json() or {}).get("active")
        return build_snapshot(ctx, split)

    feed = DashboardFeed(build, interval)
    app[FEED] = feed

    async def stop_feed(_app: web.Application) -> None:
        await feed.stop()

    app.on_shutdown.append(stop_feed)
    # The static page shows nothing until it has a key: its data comes from `/ui/events`.
    api.add(
        Route("GET", "/ui", redirect, scope=Scope.OPEN),
        Route("GET", "/ui/", index, scope=Scope.OPEN),
        Route("GET", "/ui/static/{name}", static, scope=Scope.OPEN),
        Route("GET", "/ui/events", events, scope=Scope.READ),
    )
