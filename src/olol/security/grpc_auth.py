"""The gate in front of every gRPC call an OLOL server takes, and the proof a subnet scan asks for.

`CallGuard` refuses a call without the cluster token (UNAUTHENTICATED), as a
server interceptor, so every service a server hosts is covered, including ones
added later (model transfer, ...), without each servicer checking. When a
caller asks for proof (`olol-challenge` metadata, as the proxy's subnet scan
does before it sends the token anywhere), the refusal carries
`HMAC(token, challenge + this host's addresses)`: the scanner learns that this
host is a member, a stranger learns nothing about the token, and a stranger who
relays the proof from a real agent is caught because the proof names the real
agent's addresses, not the relay's.

`ClientGuard` is the gate of a gRPC port that clients use rather than cluster
members (the proxy's sessions service): it takes the proxy's API keys, as its
HTTP API does, and the cluster token.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import grpc

from olol.errors import OlolError
from olol.security.apikeys import FULL, ApiKeys
from olol.security.signing import sign_fields, verify_fields
from olol.security.tokens import TOKEN_KEY, Unauthorized, check_token, token_matches
from olol.wire.status import STATUS_KEY, code_for

__all__ = ["ADDRS_KEY", "CHALLENGE_KEY", "PROOF_KEY", "CallGuard", "ClientGuard", "verify_proof"]

log = logging.getLogger("olol.security")

CHALLENGE_KEY = "olol-challenge"
PROOF_KEY = "olol-proof"
ADDRS_KEY = "olol-addrs"
_PURPOSE = "scan-proof"
_MAX_CHALLENGE = 64  # a nonce; anything longer is not one of ours
_LOG_EVERY = 60.0  # seconds between refusal logs per peer: a scanner must not flood the log


def _value(metadata: Iterable[Any] | None, key: str) -> str:
    for k, v in metadata or ():
        if k == key:
            return v.decode() if isinstance(v, bytes) else str(v)
    return ""


def _proof_fields(challenge: str, addresses: str) -> dict[str, str]:
    return {"challenge": challenge, "addrs": addresses}


class _Guard:
    """Decides per call whether it may proceed; `interceptors()` puts it in front of every service of a server."""

    def __init__(self) -> None:
        self._logged: dict[str, float] = {}
        self.refused = 0

    @property
    def enabled(self) -> bool:
        raise NotImplementedError

    def refusal(self, metadata: Iterable[Any] | None) -> OlolError | None:
        """None when the call may proceed; else the error to answer it with."""
        raise NotImplementedError

    def log_refusal(self, peer: str, method: str, exc: OlolError) -> None:
        now = time.monotonic()
        if now - self._logged.get(peer, -_LOG_EVERY) >= _LOG_EVERY:
            if len(self._logged) > 1024:  # bounded: a scan from many addresses must not grow this forever
                self._logged.clear()
            self._logged[peer] = now
            log.warning("refused gRPC call %s from %s: %s", method, peer, exc.message)

    def interceptors(self, *, aio: bool) -> list[Any]:
        """Server interceptors: every service on the server (agent, transfer, ...) is behind the guard."""
        if not self.enabled:
            return []
        return [_AioInterceptor(self)] if aio else [_SyncInterceptor(self)]


class CallGuard(_Guard):
    """Cluster members only: every call must carry the cluster token."""

    def __init__(self, token: str | None, addresses: Callable[[], Sequence[str]] | None = None) -> None:
        super().__init__()
        self.token = token
        self._addresses = addresses or (lambda: ())

    @property
    def enabled(self) -> bool:
        return bool(self.token)

    def refusal(self, metadata: Iterable[Any] | None) -> Unauthorized | None:
        """None when the call may proceed; else the error to answer it with (with a proof if challenged)."""
        if not self.token:
            return None
        try:
            check_token(metadata, self.token)
        except Unauthorized as exc:
            self.refused += 1
            challenge = _value(metadata, CHALLENGE_KEY)
            if challenge and len(challenge) <= _MAX_CHALLENGE:
                addrs = ",".join(self._addresses())
                proof = sign_fields(self.token, _PURPOSE, _proof_fields(challenge, addrs))
                exc.metadata = ((ADDRS_KEY, addrs), (PROOF_KEY, proof))
            return exc
        return None


class ClientGuard(_Guard):
    """A port for clients: a full API key (as on the HTTP API) or the cluster token; open when neither is set.

    Both come as `authorization: Bearer ...`. A read-only key is refused with
    PERMISSION_DENIED (403): it is for status and metrics, which this port has none of.
    """

    def __init__(self, token: str | None, keys: ApiKeys | None = None) -> None:
        super().__init__()
        self.token = token
        self.keys = keys if keys is not None else ApiKeys()

    @property
    def enabled(self) -> bool:
        return bool(self.token) or self.keys.enabled

    def refusal(self, metadata: Iterable[Any] | None) -> OlolError | None:
        if not self.enabled:
            return None
        presented = _value(metadata, TOKEN_KEY)
        if self.token and presented and token_matches(presented, self.token):
            return None
        error: OlolError
        if self.keys.enabled:
            key = self.keys.from_header(presented)
            if key is not None and key.scope == FULL:
                return None
            if key is not None:
                error = OlolError("forbidden: this API key is read-only (status and metrics)", status=403)
            else:
                error = Unauthorized("unauthorized: a valid API key is required (authorization: Bearer KEY)")
        else:
            error = Unauthorized("invalid cluster token" if presented else "missing cluster token")
        self.refused += 1
        return error


def _trailing(exc: OlolError) -> tuple[tuple[str, str], ...]:
    return ((STATUS_KEY, str(exc.status)), *getattr(exc, "metadata", ()))


def _deny_handler(guard: _Guard, handler: Any, method: str, exc: OlolError, *, aio: bool) -> Any:
    """A handler of the same shape as `handler` that refuses the call (UNAUTHENTICATED, or PERMISSION_DENIED)."""
    code = code_for(exc)
    if aio:

        async def deny_aio(_request: Any, context: Any) -> None:
            guard.log_refusal(context.peer(), method, exc)
            await context.abort(code, exc.message, trailing_metadata=_trailing(exc))

        behavior: Callable[..., Any] = deny_aio
    else:

        def deny_sync(_request: Any, context: Any) -> None:
            guard.log_refusal(context.peer(), method, exc)
            context.set_trailing_metadata(_trailing(exc))
            context.abort(code, exc.message)

        behavior = deny_sync
    streaming = (handler.request_streaming, handler.response_streaming)
    make = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[streaming]
    return make(
        behavior, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
    )


class _SyncInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(self, guard: _Guard) -> None:
        self.guard = guard

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        exc = self.guard.refusal(details.invocation_metadata)
        handler = continuation(details)
        if exc is None or handler is None:
            return handler
        return _deny_handler(self.guard, handler, details.method, exc, aio=False)


class _AioInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(self, guard: _Guard) -> None:
        self.guard = guard

    async def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        exc = self.guard.refusal(details.invocation_metadata)
        handler = await continuation(details)
        if exc is None or handler is None:
            return handler
        return _deny_handler(self.guard, handler, details.method, exc, aio=True)


def verify_proof(token: str, challenge: str, trailing: Iterable[Any] | None, dialed_host: str) -> bool:
    """True when a refusal's trailing metadata proves a member of this cluster answers at `dialed_host`."""
    addrs = _value(trailing, ADDRS_KEY)
    proof = _value(trailing, PROOF_KEY)
    if not proof or dialed_host not in addrs.split(","):
        return False
    return verify_fields(token, _PURPOSE, _proof_fields(challenge, addrs), proof)
