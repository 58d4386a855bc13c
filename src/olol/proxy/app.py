"""The aiohttp application: Ollama's routes at the root, `/v1` OpenAI routes, errors as Ollama sends them."""

from __future__ import annotations

import logging

from aiohttp import web

from olol.discovery.advert import REGISTER_PATH
from olol.discovery.proxy_side import install_discovery
from olol.errors import HostsDown, ModelNotFound, OlolError
from olol.proxy.admission import QueueFull
from olol.proxy.api.table import Route, RouteTable, Scope
from olol.proxy.context import CONTEXT, ProxyContext
from olol.proxy.endpoints import ROUTES
from olol.proxy.http.io import json_reply
from olol.proxy.openai.responses import error_body
from olol.proxy.ui import install_ui
from olol.security.http import install_guards

__all__ = ["build_app"]

log = logging.getLogger(__name__)

# Ollama's words for a model no host has, per route (its server/routes.go): most handlers answer
# `model 'x' not found`, copy quotes with %q, and the legacy /api/embeddings keeps the pull hint.
_SINGLE_QUOTED = frozenset({
    "/api/generate", "/api/chat", "/api/embed", "/api/show", "/api/delete",
    "/v1/chat/completions", "/v1/completions", "/v1/embeddings",
})  # fmt: skip


def _not_found_text(path: str, model: str) -> str:
    if path in _SINGLE_QUOTED or path.startswith("/v1/models/"):
        return f"model '{model}' not found"
    if path == "/api/copy":
        return f'model "{model}" not found'
    return f'model "{model}" not found, try pulling it first'


def _error_reply(request: web.Request, exc: OlolError) -> web.Response:
    if isinstance(exc, ModelNotFound) and exc.model:
        exc = OlolError(_not_found_text(request.path, exc.model), status=404)
    headers = {}
    if isinstance(exc, QueueFull) or (exc.status == 503 and not isinstance(exc, HostsDown)):
        headers["Retry-After"] = str(exc.retry_after if isinstance(exc, QueueFull)
                                     else request.app[CONTEXT].admission.retry_after)
    hider = request.app[CONTEXT].hider
    message = exc.message if hider is None else hider.text(exc.message)
    if request.path.startswith("/v1/"):
        return json_reply(error_body(exc.status, message), status=exc.status, headers=headers)
    return json_reply({"error": message}, status=exc.status, headers=headers)


def _errors(request: web.Request, exc: Exception) -> web.Response:
    """What a handler raised, as a reply (aiohttp's own replies and a reset client never get here).

    Called by the security gate's middleware from its `except` block (one middleware layer instead
    of two: see `olol.security.http`).
    """
    if isinstance(exc, OlolError):
        return _error_reply(request, exc)
    # A bug must still answer in Ollama's shape, or clients fail to parse the reply.
    log.exception("unhandled error on %s %s", request.method, request.path)
    return _error_reply(request, OlolError(f"internal proxy error ({type(exc).__name__}; see the proxy log)"))


def build_app(ctx: ProxyContext) -> web.Application:
    # No body size limit: blobs (model weights) are uploaded through the proxy.
    app = web.Application(client_max_size=0)
    api = RouteTable(ROUTES)  # every endpoint; modules below add the rows of theirs
    # mDNS, registrations, subnet scan: only when enabled.
    register = install_discovery(
        app, ctx.config.discovery, ctx.config.security, ctx.cluster, ctx.add_host, ctx.remove_host
    )
    if register is not None:
        api.add(Route("POST", REGISTER_PATH, register, scope=Scope.OPEN))
    if ctx.config.distributed.enabled:  # models split across rpc-servers; grpc loads only then
        from olol.proxy.distributed import install_distributed

        install_distributed(app, ctx, api)
    install_ui(app, ctx, api)  # the dashboard at /ui/
    # API keys, rate and body limits, Ollama-shaped 4xx, and the errors above: one middleware.
    install_guards(app, ctx.config.security, api.policy(), on_error=_errors)
    app[CONTEXT] = ctx
    if ctx.hider is not None:
        app.on_response_prepare.append(ctx.hider.headers_hook())
    api.install(app)
    return app
