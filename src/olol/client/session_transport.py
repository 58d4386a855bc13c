"""How the Python clients reach a proxy's chat sessions: over HTTP or over its gRPC service.

Both transports return the JSON shapes of `/api/sessions` (docs/sessions.md),
so `olol.client.sessions` does not care which one it has. Errors are typed
the same way on both: an unknown session is `SessionNotFound`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

import grpc

from olol.backends.ollama.backend import OllamaBackend
from olol.client.credentials import ClientCredentials
from olol.cluster.backend import JSON
from olol.errors import OlolError
from olol.proto import sessions_grpc as rpc
from olol.proto import sessions_pb as pb
from olol.sessions import wire
from olol.sessions.model import SessionNotFound
from olol.wire.status import error_from_rpc, protocol_metadata

__all__ = ["GrpcSessionTransport", "HttpSessionTransport", "SessionTransport", "session_transport"]


class SessionTransport(Protocol):
    async def create(self, body: JSON) -> JSON:
        """`body` as `POST /api/sessions` takes it: model, and system, options, messages, keep_alive if set."""

    def chat(self, session_id: str, message: JSON, **fields: Any) -> AsyncIterator[JSON]: ...

    async def get(self, session_id: str) -> JSON: ...

    async def list(self, model: str | None = None) -> list[JSON]: ...

    async def delete(self, session_id: str) -> None: ...

    async def close(self) -> None: ...


def _typed(exc: OlolError, session_id: str) -> OlolError:
    # A 404 is either the session or (mid-turn) the model; the message says which.
    if exc.status == 404 and exc.message.startswith('session "'):
        return SessionNotFound(session_id)
    return exc


class HttpSessionTransport:
    """`/api/sessions` of a proxy, through `OllamaBackend`'s HTTP plumbing (its error mapping, NDJSON reader)."""

    def __init__(self, url: str, credentials: ClientCredentials | None = None) -> None:
        creds = credentials or ClientCredentials()
        self._http = OllamaBackend(url, headers=creds.http_headers(), ssl=creds.ssl_context() or True)

    async def create(self, body: JSON) -> JSON:
        reply: JSON = await self._http._request("POST", "/api/sessions", body, str(body.get("model", "")))
        return reply

    async def chat(self, session_id: str, message: JSON, **fields: Any) -> AsyncIterator[JSON]:
        try:
            async for chunk in self._http._stream(f"/api/sessions/{session_id}/chat", {"message": message, **fields}):
                yield chunk
        except OlolError as exc:
            raise _typed(exc, session_id) from None

    async def get(self, session_id: str) -> JSON:
        try:
            reply: JSON = await self._http._request("GET", f"/api/sessions/{session_id}")
        except OlolError as exc:
            raise _typed(exc, session_id) from None
        return reply

    async def list(self, model: str | None = None) -> list[JSON]:
        path = "/api/sessions" + (f"?model={model}" if model else "")
        sessions: list[JSON] = (await self._http._request("GET", path))["sessions"]
        return sessions

    async def delete(self, session_id: str) -> None:
        try:
            await self._http._request("DELETE", f"/api/sessions/{session_id}")
        except OlolError as exc:
            raise _typed(exc, session_id) from None

    async def close(self) -> None:
        await self._http.close()


class GrpcSessionTransport:
    """The proxy's `olol.sessions.v1.Sessions` service (`olol proxy --grpc-port`).

    It takes the proxy's API key or the cluster token, and TLS when the proxy serves HTTPS.
    """

    def __init__(self, target: str, credentials: ClientCredentials | None = None) -> None:
        creds = credentials or ClientCredentials()
        self.target = target.removeprefix("grpc://")
        self.tls = creds.tls()
        self.metadata = (*protocol_metadata(), *creds.grpc_metadata())
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None

    @property
    def stub(self) -> Any:
        if self._stub is None:
            credentials = self.tls.channel_credentials() if self.tls is not None else None
            if credentials is not None:
                self._channel = grpc.aio.secure_channel(self.target, credentials)
            else:
                self._channel = grpc.aio.insecure_channel(self.target)
            generated: Any = rpc  # generated code is untyped
            self._stub = generated.SessionsStub(self._channel)
        return self._stub

    async def _unary(self, method: str, request: Any, session_id: str = "") -> Any:
        try:
            return await getattr(self.stub, method)(request, metadata=self.metadata)
        except grpc.RpcError as exc:
            raise _typed(error_from_rpc(exc, self.target), session_id) from None

    async def create(self, body: JSON) -> JSON:
        return wire.session_from_pb(await self._unary("CreateSession", wire.create_request_to_pb(**body)))

    async def chat(self, session_id: str, message: JSON, **fields: Any) -> AsyncIterator[JSON]:
        fields.pop("stream", None)  # gRPC always streams
        call = self.stub.ChatMessage(wire.chat_request_to_pb(session_id, message, **fields), metadata=self.metadata)
        try:
            async for chunk in call:
                yield wire.chunk_from_pb(chunk)
        except grpc.RpcError as exc:
            raise _typed(error_from_rpc(exc, self.target), session_id) from None
        finally:
            call.cancel()  # a no-op when finished; stops the turn when the caller stops early

    async def get(self, session_id: str) -> JSON:
        return wire.session_from_pb(await self._unary("GetSession", pb.SessionRef(session_id=session_id), session_id))

    async def list(self, model: str | None = None) -> list[JSON]:
        reply = await self._unary("ListSessions", pb.ListSessionsRequest(model=model or ""))
        return wire.session_list_from_pb(reply)

    async def delete(self, session_id: str) -> None:
        await self._unary("DeleteSession", pb.SessionRef(session_id=session_id), session_id)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(grace=None)
        self._channel, self._stub = None, None


def session_transport(target: str, credentials: ClientCredentials | None = None) -> SessionTransport:
    """HTTP for `http(s)://` targets, else gRPC (`host:port` of the proxy's sessions service)."""
    if target.startswith(("http://", "https://")):
        return HttpSessionTransport(target, credentials)
    return GrpcSessionTransport(target, credentials)
