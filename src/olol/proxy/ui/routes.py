"""The dashboard's HTTP side: the page and its files under `/ui/`, and its live feed at `/ui/events`.

The page and its static files are served to anyone (they hold no cluster data);
everything the page shows comes from `/ui/events`, which needs a key when keys
are on (a read key views; actions go to the ordinary API and need a full key).
The feed is a stream of server-sent events read with `fetch`, not `EventSource`,
because only `fetch` can send the `Authorization` header.
"""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp import web

from olol.proxy.ui.feed import DashboardFeed
from olol.security.apikeys import FULL
from olol.security.http import API_KEY

__all__ = ["CSP", "FEED", "events", "index", "redirect", "static"]

STATIC = Path(__file__).resolve().parent / "static"
FEED: web.AppKey[DashboardFeed] = web.AppKey("olol_dashboard_feed", DashboardFeed)

#: Nothing inline, nothing from elsewhere: scripts, styles and data come from this proxy only.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".txt": "text/plain",
          ".png": "image/png", ".svg": "image/svg+xml"}
# Files the page may ask for, fixed at import: a request names one of these or gets 404 (no path walking).
_FILES = {p.name: p for p in STATIC.iterdir() if p.is_file() and p.suffix in _TYPES} if STATIC.is_dir() else {}


def _file(path: Path, cache: str) -> web.Response:
    return web.Response(body=path.read_bytes(), content_type=_TYPES[path.suffix], charset="utf-8"
                        if path.suffix != ".png" else None, headers={**_HEADERS, "Cache-Control": cache})


async def redirect(_request: web.Request) -> web.Response:
    raise web.HTTPFound("/ui/")


async def index(_request: web.Request) -> web.Response:
    return _file(STATIC / "index.html", "no-cache")


async def static(request: web.Request) -> web.Response:
    path = _FILES.get(request.match_info["name"])
    if path is None:
        raise web.HTTPNotFound()
    return _file(path, "no-cache")  # revalidated: a proxy upgrade must not leave an old script in the page


def _access(request: web.Request) -> str:
    """What this page may do: `open` (keys are off), `full` or `read`."""
    key = request.get(API_KEY)
    if key is None:
        return "open"
    return "full" if key.scope == FULL else "read"


async def events(request: web.Request) -> web.StreamResponse:
    feed = request.app[FEED]
    response = web.StreamResponse(headers={
        **_HEADERS, "Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
    await response.prepare(request)
    hello = json.dumps({"access": _access(request), "interval_s": feed.interval})
    await response.write(f"event: hello\ndata: {hello}\n\n".encode())
    sub = feed.subscribe()
    try:
        # Until the page goes away (its handler is cancelled) or the proxy stops (an empty update).
        while update := await sub.next():
            await response.write(update)
    finally:
        feed.unsubscribe(sub)
    return response
