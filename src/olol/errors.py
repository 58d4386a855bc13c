"""Errors with Ollama's status codes and messages, shared by every mode.

Backends raise these; the agent maps them to gRPC status codes (see
`olol.wire.status`) and the proxy maps them back to HTTP, so a client sees the
same `{"error": ...}` body and status it would get from Ollama itself.
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailable",
    "BadRequest",
    "Busy",
    "Cancelled",
    "ModelNotFound",
    "OlolError",
    "ProtocolMismatch",
    "Unsupported",
]


class OlolError(Exception):
    """An error a client should see, with the HTTP status Ollama would use."""

    status: int = 500

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    def to_json(self) -> dict[str, str]:
        return {"error": self.message}


class BadRequest(OlolError):
    status = 400


class ModelNotFound(OlolError):
    status = 404

    def __init__(self, model: str) -> None:
        super().__init__(f'model "{model}" not found, try pulling it first')
        self.model = model


class Cancelled(OlolError):
    status = 499


class Unsupported(OlolError):
    """The backend cannot do this at all (e.g. `pull` on a single-file llama.cpp host)."""

    status = 501


class Busy(OlolError):
    status = 503

    def __init__(self, message: str = "server busy, please try again. maximum pending requests exceeded") -> None:
        super().__init__(message)


class BackendUnavailable(OlolError):
    """The backend process or host cannot be reached (connection refused, died)."""

    status = 502


class ProtocolMismatch(OlolError):
    status = 426
