"""One row per endpoint of the proxy: method, path, handler, body spec, auth scope, OpenAPI summary.

The rows (`olol.proxy.endpoints`) are the one place an endpoint is declared:
`RouteTable.install` adds them to the aiohttp router, `policy()` tells the security gate which
routes are open, which a read-only key may see, which bodies are checked against which spec and
which are streamed; `olol.proxy.api.openapi` makes the published contract from the same rows.
Modules that add endpoints give their rows to the table (`olol.proxy.http.sessions.ROUTES`,
`olol.proxy.distributed`, discovery's registration).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from enum import Enum

from aiohttp import web

from olol.proxy.api.bodies import BodySpec, parse_body
from olol.security.http import RoutePolicy

__all__ = ["Route", "RouteTable", "Scope", "canonical"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_REGEX_PART = re.compile(r"\{(\w+):[^{}]*(?:\{[^{}]*\}[^{}]*)*\}")


class Scope(Enum):
    """Who may call a route when the proxy has API keys."""

    OPEN = "open"  # no key: liveness, and registrations (signed instead)
    READ = "read"  # any key, read-only ones too: version, status, metrics
    WRITE = "write"  # a full key


@dataclass(frozen=True)
class Route:
    method: str  # GET routes answer HEAD too (aiohttp)
    path: str  # aiohttp's pattern: /api/blobs/{digest}
    #: None: declared for its scope, served only when its module installs it (registration without --discovery).
    handler: Handler | None
    body: BodySpec | None = None  # the request body, checked by the gate before the handler
    scope: Scope = Scope.WRITE
    #: A GET route's line in the OpenAPI description; a route with a body is described by it (its struct name).
    summary: str | None = None
    buffered: bool = True  # False: the body streams to the handler (model weights), no JSON checks or limits


def canonical(path: str) -> str:
    """A pattern as aiohttp's `resource.canonical` gives it: `/v1/models/{model:.+}` -> `/v1/models/{model}`."""
    return _REGEX_PART.sub(r"{\1}", path)


class RouteTable:
    """The proxy's endpoints: the core table plus the rows modules add before the app starts."""

    def __init__(self, rows: Iterable[Route] = ()) -> None:
        self.rows: list[Route] = list(rows)

    def add(self, *rows: Route) -> None:
        self.rows.extend(rows)

    def policy(self) -> RoutePolicy:
        """What the gate checks, keyed by the pattern a request matched (aiohttp's canonical form)."""
        rows = [(r, canonical(r.path)) for r in self.rows]
        return RoutePolicy(
            open=frozenset(path for r, path in rows if r.scope is Scope.OPEN),
            read=frozenset(path for r, path in rows if r.scope in (Scope.OPEN, Scope.READ)),
            unbuffered=frozenset(path for r, path in rows if not r.buffered),
            bodies={(r.method, path): r.body for r, path in rows if r.body is not None},
            parse=parse_body,
        )

    def install(self, app: web.Application) -> None:
        router = app.router
        for row in self.rows:
            if row.handler is None:
                continue
            if row.method == "GET":
                router.add_get(row.path, row.handler)  # and HEAD
            else:
                router.add_route(row.method, row.path, row.handler)
