"""The proxy's HTTP API, one row per endpoint (`Route`: method, path, handler, body, scope, summary).

Adding an endpoint: a handler in `olol/proxy/http/<area>.py` and its row here (or in its module's
`ROUTES`, added below); its body spec in `olol.proxy.api.bodies`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from olol.discovery.advert import REGISTER_PATH
from olol.proxy.api import bodies
from olol.proxy.api.openapi import document
from olol.proxy.api.table import Route, Scope
from olol.proxy.http import hosts, inference, manage, observe, openai, placement, sessions, views

__all__ = ["BODY_SPECS", "OPENAPI_PATH", "ROUTES", "openapi_spec"]

OPEN, READ = Scope.OPEN, Scope.READ
OPENAPI_PATH = "/olol/openapi.json"


async def _openapi(_request: web.Request) -> web.Response:
    return web.json_response(openapi_spec())


ROUTES: tuple[Route, ...] = (
    Route("GET", "/", views.root, scope=OPEN, summary="Liveness: `Ollama is running`"),
    Route("GET", "/api/version", views.version, scope=READ, summary="Version"),
    Route("GET", "/api/tags", views.tags, summary="Models on the cluster's hosts"),
    Route("GET", "/api/ps", views.ps, summary="Models loaded on the cluster's hosts"),
    Route("GET", "/api/status", observe.status, scope=READ, summary="Cluster status (OLOL)"),
    Route("GET", "/v1/models", openai.models, summary="Models (OpenAI)"),
    Route("POST", "/api/generate", inference.generate, bodies.GENERATE),
    Route("POST", "/api/chat", inference.chat, bodies.CHAT),
    Route("POST", "/api/embed", inference.embed, bodies.EMBED),
    Route("POST", "/api/embeddings", inference.embeddings, bodies.EMBEDDINGS),
    Route("POST", "/api/show", views.show, bodies.SHOW),
    Route("POST", "/api/pull", placement.pull, bodies.PULL),  # replicas, LAN copies, smart quantization
    Route("POST", "/api/push", manage.push, bodies.PUSH),
    Route("POST", "/api/create", manage.create, bodies.CREATE),
    Route("POST", "/api/copy", manage.copy, bodies.COPY),
    Route("DELETE", "/api/delete", manage.delete, bodies.DELETE),
    Route("POST", "/v1/chat/completions", openai.chat_completions, bodies.OAI_CHAT),
    Route("POST", "/v1/completions", openai.completions, bodies.OAI_COMPLETION),
    Route("POST", "/v1/embeddings", openai.embeddings, bodies.OAI_EMBED),
    Route("HEAD", "/api/blobs/{digest}", manage.blob_exists),
    Route("POST", "/api/blobs/{digest}", manage.blob_upload, buffered=False),  # model weights, streamed
    Route("GET", "/v1/models/{model:.+}", openai.model),
    Route("GET", "/metrics", observe.metrics, scope=READ),
    Route("GET", OPENAPI_PATH, _openapi, scope=READ),
    # Agents' and rpc-servers' signed registrations: served with --discovery (olol.discovery.proxy_side).
    Route("POST", REGISTER_PATH, None, scope=OPEN),
    *sessions.ROUTES,
    *hosts.ROUTES,  # drain / undrain
)

#: (method, path) -> the body it takes.
BODY_SPECS: dict[tuple[str, str], bodies.BodySpec] = {(r.method, r.path): r.body for r in ROUTES if r.body}


def openapi_spec() -> dict[str, Any]:
    """The OpenAPI document of the proxy's API (`GET /olol/openapi.json`)."""
    return document(ROUTES)
