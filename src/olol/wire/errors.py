"""Error bodies as OpenAI's API sends them (under /v1); Ollama's are `{"error": message}`.

Here, below every HTTP layer, because both the proxy's OpenAI routes and the security gate (refusing a
/v1 request before any route runs) answer in this shape.
"""

from __future__ import annotations

from typing import Any

__all__ = ["error_body"]


def error_body(status: int, message: str) -> dict[str, Any]:
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}
