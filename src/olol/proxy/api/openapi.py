"""The proxy's OpenAPI description, generated from its route table (the rows that check request bodies).

Published at `GET /olol/openapi.json`, so clients and fuzzers (schemathesis)
see exactly the contract the proxy enforces: which fields each route takes,
their types, and that every error is `{"error": "..."}` (OpenAI's error object
under /v1).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import olol
from olol.proxy.api.bodies import MESSAGE_FIELDS, MESSAGES, BodySpec
from olol.proxy.api.table import Route

__all__ = ["document"]

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


def document(routes: Iterable[Route]) -> dict[str, Any]:
    """The OpenAPI document of `routes`: GET rows with a summary, then every row with a body."""
    rows = list(routes)
    paths: dict[str, Any] = {}
    ok = {"description": "success (a JSON object, or NDJSON / SSE when streaming)"}
    for row in rows:
        if row.method == "GET" and row.summary is not None:
            paths.setdefault(row.path, {})["get"] = {"summary": row.summary, "responses": _responses(row.path, ok)}
    for row in rows:
        if row.body is not None:
            paths.setdefault(row.path, {})[row.method.lower()] = {
                "summary": row.summary or row.body.struct,
                "requestBody": {"required": True, "content": {"application/json": {"schema": _body_schema(row.body)}}},
                "responses": _responses(row.path, ok),
            }
    return {
        "openapi": "3.0.3",
        "info": {"title": "OLOL proxy (Ollama-compatible API)", "version": olol.__version__},
        "components": {"securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}}},
        "security": [{}, {"apiKey": []}],
        "paths": paths,
    }
