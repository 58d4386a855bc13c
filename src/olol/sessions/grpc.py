"""The `olol.sessions.v1.Sessions` gRPC service, run by the proxy beside its HTTP API (`--grpc-port`).

It lives in the proxy's process and event loop (grpc.aio), over the same
`SessionManager` as `/api/sessions`, so both APIs see the same sessions.
Errors travel as the agent's do (`olol.wire.status`): a gRPC code plus
Ollama's HTTP status in trailing metadata, so clients rebuild the same error.

It is guarded like the HTTP API, never a side door around it: the proxy's API
keys or the cluster token on every call (an interceptor, so a service added
here later is covered too), TLS with the proxy's certificate when it serves
HTTPS (`olol.security.serving`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from olol.errors import OlolError
from olol.proto import sessions_grpc as rpc
from olol.proto import sessions_pb as pb
from olol.security.serving import bind_grpc, client_grpc_interceptors
from olol.security.settings import SecuritySettings
from olol.sessions import wire
from olol.sessions.manager import SessionManager
from olol.wire.status import STATUS_KEY, check_protocol, code_for

__all__ = ["SessionsGrpcServer", "SessionsServicer"]

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
T = TypeVar("T")

_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024), ("grpc.max_send_message_length", 64 * 1024 * 1024)]


async def _abort(context: Context, exc: Exception) -> None:
    err = exc if isinstance(exc, OlolError) else OlolError("internal error (see the proxy's log)")
    if not isinstance(exc, OlolError):
        log.exception("sessions gRPC call failed", exc_info=exc)
    await context.abort(code_for(err), err.message, trailing_metadata=((STATUS_KEY, str(err.status)),))


class SessionsServicer(rpc.SessionsServicer):
    def __init__(self, manager: SessionManager) -> None:
        self.manager = manager

    def _check(self, context: Context) -> None:
        check_protocol(context.invocation_metadata())

    async def _unary(self, context: Context, work: Callable[[], Awaitable[T]]) -> T:
        try:
            self._check(context)
            return await work()
        except Exception as exc:
            await _abort(context, exc)
            raise  # unreachable: abort raises

    async def CreateSession(self, request: pb.CreateSessionRequest, context: Context) -> pb.Session:
        async def work() -> pb.Session:
            session = await self.manager.create(**wire.create_request_from_pb(request))
            return wire.session_to_pb(session, self.manager.ttl)

        return await self._unary(context, work)

    async def GetSession(self, request: pb.SessionRef, context: Context) -> pb.Session:
        async def work() -> pb.Session:
            return wire.session_to_pb(await self.manager.get(request.session_id), self.manager.ttl)

        return await self._unary(context, work)

    async def ListSessions(self, request: pb.ListSessionsRequest, context: Context) -> pb.SessionList:
        async def work() -> pb.SessionList:
            sessions = await self.manager.list(request.model or None)
            return pb.SessionList(sessions=[wire.summary_to_pb(s, self.manager.ttl) for s in sessions])

        return await self._unary(context, work)

    async def DeleteSession(self, request: pb.SessionRef, context: Context) -> pb.DeleteSessionResponse:
        async def work() -> pb.DeleteSessionResponse:
            await self.manager.delete(request.session_id)
            return pb.DeleteSessionResponse()

        return await self._unary(context, work)

    async def ChatMessage(self, request: pb.ChatMessageRequest, context: Context) -> AsyncIterator[pb.ChatMessageChunk]:
        try:
            self._check(context)
            message, options, extra = wire.chat_request_from_pb(request)
            turn = await self.manager.open_turn(request.session_id, message, options=options, extra=extra)
            try:
                async for chunk in turn:
                    yield wire.chunk_to_pb(chunk)
            finally:
                # Also on cancellation (client gone): closes the upstream call, which stops the host generating.
                await turn.aclose()
        except Exception as exc:
            await _abort(context, exc)


class SessionsGrpcServer:
    def __init__(
        self,
        manager: SessionManager,
        host: str,
        port: int,
        *,
        grace: float = 5.0,
        security: SecuritySettings | None = None,
    ) -> None:
        self.manager = manager
        self.host = host
        self.requested_port = port
        self.grace = grace
        self.security = security if security is not None else SecuritySettings()  # the proxy's: keys, token, TLS
        self.port = 0
        self._server: grpc.aio.Server | None = None

    async def start(self) -> int:
        server = grpc.aio.server(options=_OPTIONS, interceptors=client_grpc_interceptors(self.security, aio=True))
        generated: Any = rpc  # generated code is untyped
        generated.add_SessionsServicer_to_server(SessionsServicer(self.manager), server)
        port = bind_grpc(server, self.host, self.requested_port, self.security, "sessions gRPC service", clients=True)
        await server.start()
        self._server, self.port = server, port
        log.info("olol sessions gRPC service on %s:%d", self.host, port)
        return port

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop(self.grace)
