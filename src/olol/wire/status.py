"""Typed errors <-> gRPC status, and the protocol-version handshake in metadata.

The HTTP status Ollama would have used travels in trailing metadata
(`olol-http-status`), so a proxy turns a gRPC failure back into exactly the
Ollama error a client expects, including the ones that share a gRPC code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import grpc

from olol import PROTOCOL_VERSION
from olol.errors import (
    BackendUnavailable,
    BadRequest,
    Busy,
    Cancelled,
    ModelNotFound,
    OlolError,
    ProtocolMismatch,
    Unsupported,
)

__all__ = [
    "PROTOCOL_KEY",
    "STATUS_KEY",
    "check_protocol",
    "code_for",
    "error_from_rpc",
    "protocol_metadata",
]

_NOT_FOUND = re.compile(r"""model ["'](.+?)["'] not found""")

PROTOCOL_KEY = "olol-protocol"
STATUS_KEY = "olol-http-status"

_CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    426: grpc.StatusCode.FAILED_PRECONDITION,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,
    501: grpc.StatusCode.UNIMPLEMENTED,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.RESOURCE_EXHAUSTED,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
# Without our metadata (a foreign peer, or grpc's own failures) the code decides.
_STATUS_OF_CODE: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.FAILED_PRECONDITION: 426,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 503,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 502,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
}
_CLASS_OF_STATUS: dict[int, type[OlolError]] = {
    400: BadRequest,
    499: Cancelled,
    501: Unsupported,
    502: BackendUnavailable,
    426: ProtocolMismatch,
}


def code_for(err: OlolError) -> grpc.StatusCode:
    return _CODES.get(err.status, grpc.StatusCode.INTERNAL)


def protocol_metadata() -> tuple[tuple[str, str], ...]:
    return ((PROTOCOL_KEY, PROTOCOL_VERSION),)


def check_protocol(metadata: Iterable[Any] | None) -> None:
    """Refuse a peer whose schema major version differs; a peer that sends none is let in."""
    for key, value in metadata or ():
        if key == PROTOCOL_KEY:
            theirs = value.decode() if isinstance(value, bytes) else value
            if theirs.split(".")[0] != PROTOCOL_VERSION.split(".")[0]:
                raise ProtocolMismatch(
                    f"protocol mismatch: peer speaks olol protocol {theirs}, this host speaks "
                    f"{PROTOCOL_VERSION}; upgrade the older side"
                )


def error_from_rpc(exc: grpc.RpcError, target: str = "") -> OlolError:
    """Rebuild the typed error an agent raised from the RpcError a client received."""
    call: Any = exc  # grpc's RpcError is also the Call that carries code/details/metadata
    code: grpc.StatusCode = call.code()
    details: str = call.details() or code.name.lower()
    status = None
    for key, value in call.trailing_metadata() or ():
        if key == STATUS_KEY:
            status = int(value)
    if status is None:
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return BackendUnavailable(f"agent {target} unreachable: {details}")
        status = _STATUS_OF_CODE.get(code, 500)
    if status == 404 and "not found" in details:
        named = _NOT_FOUND.search(details)  # the model's name, so the proxy can word it per route
        err: OlolError = ModelNotFound(named.group(1) if named else "")
        err.message = details
        err.args = (details,)
        return err
    if status == 503:
        return Busy(details)
    cls = _CLASS_OF_STATUS.get(status)
    return cls(details) if cls else OlolError(details, status=status)
