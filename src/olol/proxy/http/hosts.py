"""Operator actions on one host: `POST /api/hosts/{id}/drain` and `/undrain`.

Draining takes a host out of routing for new requests while the streams it has
open run to their end (maintenance, a reboot, a model swap); undrain puts it
back. The host id is its server spec as `/api/status` lists it (URL-encoded in
the path when it holds `/`). A full API key is needed when keys are on.
"""

from __future__ import annotations

from aiohttp import web

from olol.errors import OlolError
from olol.proxy.api.table import Route
from olol.proxy.http.io import ctx, json_reply

__all__ = ["ROUTES", "drain", "undrain"]


def _host_reply(request: web.Request, draining: bool) -> web.Response:
    c = ctx(request)
    host_id = request.match_info["id"]
    host = c.cluster.get(host_id)
    if host is None:
        raise OlolError(f"host {host_id!r} not found", status=404)
    (c.cluster.drain if draining else c.cluster.undrain)(host)
    return json_reply({"id": host.id, "state": host.state, "draining": host.draining, "in_flight": host.in_flight})


async def drain(request: web.Request) -> web.Response:
    return _host_reply(request, True)


async def undrain(request: web.Request) -> web.Response:
    return _host_reply(request, False)


#: This module's rows of the proxy's route table (olol.proxy.endpoints).
# `.+`: host ids are server specs and may hold ':' and '/' ("http://gpu1:11434").
ROUTES = (
    Route("POST", "/api/hosts/{id:.+}/drain", drain),
    Route("POST", "/api/hosts/{id:.+}/undrain", undrain),
)
