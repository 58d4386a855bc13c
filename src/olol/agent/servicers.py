"""The gRPC servicers, threaded and asyncio, generated from one table over AgentCore.

Both transports share: the protocol check, the mapping of typed errors to gRPC
status (with Ollama's HTTP status in trailing metadata), and the core calls.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc

from olol.agent.core import AgentCore
from olol.bridge import LoopThread
from olol.errors import OlolError
from olol.proto import rpc
from olol.wire.status import STATUS_KEY, check_protocol, code_for

log = logging.getLogger("olol.agent")

# method -> (AgentCore attribute, call shape)
METHODS: dict[str, tuple[str, str]] = {
    "Generate": ("generate", "stream"),
    "Chat": ("chat", "stream"),
    "Embed": ("embed", "unary"),
    "List": ("list", "unary"),
    "Show": ("show", "unary"),
    "Running": ("running", "unary"),
    "Pull": ("pull", "stream"),
    "Push": ("push", "stream"),
    "Create": ("create", "stream"),
    "Copy": ("copy", "unary"),
    "Delete": ("delete", "unary"),
    "HasBlob": ("has_blob", "unary"),
    "PushBlob": ("push_blob", "client_stream"),
    "Version": ("version", "unary"),
    "Hardware": ("hardware", "unary"),
    "WatchState": ("watch_state", "stream"),
    "ChatParts": ("chat_parts", "bidi"),
    "GenerateParts": ("generate_parts", "bidi"),
}
_ADDERS: tuple[Callable[[Any, Any], None], ...] = (
    rpc.add_InferenceServicer_to_server,
    rpc.add_ModelsServicer_to_server,
    rpc.add_HostServicer_to_server,
)


def _as_olol(exc: Exception) -> OlolError:
    if isinstance(exc, OlolError):
        return exc
    log.exception("internal error")
    # The traceback is in the agent's log; a Python exception's text is no answer for an Ollama client.
    return OlolError(f"internal error on the agent ({type(exc).__name__}; see its log)")


def _metadata(err: OlolError) -> tuple[tuple[str, str], ...]:
    return ((STATUS_KEY, str(err.status)),)


# ---------------------------------------------------------------------- asyncio
def _aio_method(fn: Callable[..., Any], shape: str) -> Callable[..., Any]:
    async def abort(context: grpc.aio.ServicerContext[Any, Any], exc: Exception) -> None:
        err = _as_olol(exc)
        await context.abort(code_for(err), err.message, trailing_metadata=_metadata(err))

    if shape in ("stream", "bidi"):  # a bidi call's request is the async iterator of what the client sends

        async def stream(self: object, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                check_protocol(context.invocation_metadata())
                async for item in fn(request):
                    yield item
            except Exception as exc:
                await abort(context, exc)

        return stream

    async def unary(self: object, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            check_protocol(context.invocation_metadata())
            return await fn(request)
        except Exception as exc:
            await abort(context, exc)

    return unary


def aio_servicer(core: AgentCore) -> object:
    attrs = {name: _aio_method(getattr(core, attr), shape) for name, (attr, shape) in METHODS.items()}
    return type("AioAgentServicer", (), attrs)()


# ---------------------------------------------------------------------- threaded
def _sync_method(fn: Callable[..., Any], shape: str, loop: LoopThread) -> Callable[..., Any]:
    def abort(context: grpc.ServicerContext, exc: Exception) -> None:
        err = _as_olol(exc)
        context.set_trailing_metadata(_metadata(err))
        context.abort(code_for(err), err.message)

    if shape in ("stream", "bidi"):

        def stream(self: object, request: Any, context: grpc.ServicerContext) -> Any:
            try:
                check_protocol(context.invocation_metadata())
                arg = loop.aiter(request) if shape == "bidi" else request  # what the client sends, as it comes
                yield from loop.iterate(lambda: fn(arg), context.add_callback)
            except Exception as exc:
                if context.is_active():
                    abort(context, exc)

        return stream

    def unary(self: object, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            check_protocol(context.invocation_metadata())
            arg = loop.aiter(request) if shape == "client_stream" else request
            return loop.call(_call(fn, arg))
        except Exception as exc:
            abort(context, exc)

    return unary


async def _call(fn: Callable[..., Any], arg: Any) -> Any:
    return await fn(arg)


def sync_servicer(core: AgentCore, loop: LoopThread) -> object:
    attrs = {name: _sync_method(getattr(core, attr), shape, loop) for name, (attr, shape) in METHODS.items()}
    return type("ThreadedAgentServicer", (), attrs)()


def add_to_server(servicer: object, server: Any) -> None:
    for add in _ADDERS:
        add(servicer, server)


__all__ = ["METHODS", "add_to_server", "aio_servicer", "sync_servicer"]
