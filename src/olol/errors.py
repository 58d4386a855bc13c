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
    "HostsDown",
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


class HostsDown(OlolError):
    """The model is only on hosts that are down now (or no host is up to say whether it has it).

    Unlike `Busy` there is nothing to queue for, so the request fails at once, with no
    `Retry-After`: as a lone Ollama that is down fails, with a connection error.
    """

    status = 503

    def __init__(self, model: str, hosts: str, *, known: bool = True) -> None:
        where = "is only on hosts that are down" if known else "cannot be served: no host is up"
        super().__init__(f'model "{model}" {where}: {hosts}')
        self.model = model


class BackendUnavailable(OlolError):
    """The backend process or host cannot be reached (connection refused, died)."""

    status = 502


class ProtocolMismatch(OlolError):
    status = 426
