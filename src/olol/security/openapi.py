"""The proxy's OpenAPI description, generated from the same table that checks request bodies.

Published at `GET /olol/openapi.json`, so clients and fuzzers (schemathesis)
see exactly the contract the proxy enforces: which fields each route takes,
their types, and that every error is `{"error": "..."}` (OpenAI's error object
under /v1).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

import olol
from olol.security.schema import BODY_SPECS, MESSAGE_FIELDS, MESSAGES, BodySpec

__all__ = ["openapi_handler", "openapi_spec"]

_GETS = {
    "/": "Liveness: `Ollama is running`",
    "/api/version": "Version",
    "/api/tags": "Models on the cluster's hosts",
    "/api/ps": "Models loaded on the cluster's hosts",
    "/api/status": "Cluster status (OLOL)",
    "/v1/models": "Models (OpenAI)",
}
_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
_OAI_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "object"}}}
_STATUSES = ("400", "401", "403", "404", "413", "429", "499", "500", "501", "502", "503", "504")


def _body_schema(spec: BodySpec) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for name, kind in spec.fields.items():
        schema = dict(kind.schema)
        if kind is MESSAGES:
            message = {k: dict(v.schema) for k, v in MESSAGE_FIELDS.items()}
            schema = {"type": "array", "items": {"type": "object", "properties": message}}
        props[name] = schema
    return {"type": "object", "properties": props, "additionalProperties": not spec.closed}


def _responses(path: str, ok: dict[str, Any]) -> dict[str, Any]:
    error = _OAI_ERROR if path.startswith("/v1/") else _ERROR
    out = {"200": ok}
    for status in _STATUSES:
        out[status] = {"description": "error", "content": {"application/json": {"schema": error}}}
    return out


def openapi_spec() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    ok = {"description": "success (a JSON object, or NDJSON / SSE when streaming)"}
    for path, summary in _GETS.items():
        paths.setdefault(path, {})["get"] = {"summary": summary, "responses": _responses(path, ok)}
    for (method, path), spec in BODY_SPECS.items():
        paths.setdefault(path, {})[method.lower()] = {
            "summary": spec.struct,
            "requestBody": {"required": True, "content": {"application/json": {"schema": _body_schema(spec)}}},
            "responses": _responses(path, ok),
        }
    return {
        "openapi": "3.0.3",
        "info": {"title": "OLOL proxy (Ollama-compatible API)", "version": olol.__version__},
        "components": {"securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}}},
        "security": [{}, {"apiKey": []}],
        "paths": paths,
    }


async def openapi_handler(_request: web.Request) -> web.Response:
    return web.json_response(openapi_spec())
