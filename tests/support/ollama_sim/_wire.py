"""JSON on the wire as Ollama's Go server writes it."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

JSON = dict[str, Any]


def _dumps(obj: Any) -> bytes:
    # Go's encoder: compact, UTF-8 as is.
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=_dumps(obj), content_type="application/json", charset="utf-8")
