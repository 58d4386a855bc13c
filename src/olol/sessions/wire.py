"""Sessions over gRPC: protobuf <-> the JSON the HTTP API speaks, in one place for server and client.

Both sides of the gRPC API see sessions in exactly the JSON shape of
`/api/sessions` (docs/sessions.md), so the Python client treats both
transports alike. Messages, options and chunks reuse `olol.wire.convert`.
"""

from __future__ import annotations

from typing import Any

from olol.cluster.backend import JSON
from olol.proto import pb as olol_pb
from olol.proto import sessions_pb as pb
from olol.sessions.model import HistoryMessage, Session
from olol.wire import convert
from olol.wire.values import duration_to_json, rfc3339_from_ns

__all__ = [
    "chat_request_from_pb",
    "chat_request_to_pb",
    "chunk_from_pb",
    "chunk_to_pb",
    "create_request_from_pb",
    "create_request_to_pb",
    "session_from_pb",
    "session_list_from_pb",
    "session_to_pb",
    "summary_to_pb",
]


# ------------------------------------------------------------------ requests
def create_request_to_pb(
    model: str,
    *,
    system: str | None = None,
    options: JSON | None = None,
    messages: list[JSON] | None = None,
    keep_alive: Any = None,
) -> pb.CreateSessionRequest:
    carrier = convert.chat_request_to_pb(
        {"model": model, "messages": messages or [], "options": options or {}, "keep_alive": keep_alive}
    )
    out = pb.CreateSessionRequest(model=model, system=system or "", options=carrier.options, messages=carrier.messages)
    if carrier.HasField("keep_alive"):
        out.keep_alive = carrier.keep_alive
    return out


def create_request_from_pb(req: pb.CreateSessionRequest) -> JSON:
    """Keyword arguments of `SessionManager.create`."""
    return {
        "model": req.model,
        "system": req.system or None,
        "options": convert.options_from_pb(req.options) if req.HasField("options") else None,
        "messages": [convert.message_from_pb(m) for m in req.messages],
        "keep_alive": duration_to_json(req.keep_alive) if req.HasField("keep_alive") else None,
    }


def _copy_turn_fields(src: Any, dst: Any) -> None:
    """The fields ChatMessageRequest shares with olol.v1.ChatRequest, set ones only."""
    for name in ("options", "format", "think"):
        if src.HasField(name):
            getattr(dst, name).CopyFrom(getattr(src, name))
    if src.HasField("keep_alive"):
        dst.keep_alive = src.keep_alive


def chat_request_to_pb(session_id: str, message: JSON, **fields: Any) -> pb.ChatMessageRequest:
    """`fields`: options, format, think, tools, keep_alive, as in an Ollama chat request."""
    # A ChatRequest carries the same fields; converting through it keeps one validation path.
    carrier = convert.chat_request_to_pb({"model": "-", "messages": [message], **fields})
    out = pb.ChatMessageRequest(session_id=session_id, message=carrier.messages[0], tools=carrier.tools)
    _copy_turn_fields(carrier, out)
    return out


def chat_request_from_pb(req: pb.ChatMessageRequest) -> tuple[JSON, JSON | None, JSON]:
    """(message, options, extra) for `SessionManager.open_turn`."""
    carrier = olol_pb.ChatRequest(messages=[req.message], tools=req.tools)
    _copy_turn_fields(req, carrier)
    body = convert.chat_request_from_pb(carrier)
    message = body.pop("messages")[0]
    options = body.pop("options", None)
    body.pop("model", None)
    return message, options, body


# ------------------------------------------------------------------ sessions
def _message_to_pb(m: HistoryMessage) -> pb.HistoryMessage:
    return pb.HistoryMessage(
        message=convert.message_to_pb(m.to_ollama()),
        created_at=m.created_at,
        tokens=m.tokens,
        tokens_estimated=m.tokens_estimated,
        duration=m.duration,
    )


def summary_to_pb(session: Session, ttl: float | None) -> pb.SessionInfo:
    info = pb.SessionInfo(
        id=session.id,
        model=session.model,
        created_at=session.created_at,
        updated_at=session.updated_at,
        expires_at=session.expires_at(ttl),
        host=session.host,
        message_count=session.message_count,
        tokens=session.tokens,
    )
    if session.options:
        info.options.CopyFrom(convert.options_to_pb(session.options))
    return info


def session_to_pb(session: Session, ttl: float | None) -> pb.Session:
    return pb.Session(info=summary_to_pb(session, ttl), messages=[_message_to_pb(m) for m in session.history])


def _summary_from_pb(info: pb.SessionInfo) -> JSON:
    out: JSON = {
        "id": info.id,
        "model": info.model,
        "created_at": rfc3339_from_ns(info.created_at),
        "updated_at": rfc3339_from_ns(info.updated_at),
        "expires_at": rfc3339_from_ns(info.expires_at) if info.expires_at else None,
        "host": info.host,
        "message_count": info.message_count,
        "tokens": info.tokens,
    }
    if info.HasField("options"):
        out["options"] = convert.options_from_pb(info.options)
    return out


def session_from_pb(session: pb.Session) -> JSON:
    messages = [
        {
            **convert.message_from_pb(m.message),
            "created_at": rfc3339_from_ns(m.created_at),
            "tokens": m.tokens,
            "tokens_estimated": m.tokens_estimated,
            "duration": m.duration,
        }
        for m in session.messages
    ]
    return {**_summary_from_pb(session.info), "messages": messages}


def session_list_from_pb(sessions: pb.SessionList) -> list[JSON]:
    return [_summary_from_pb(s) for s in sessions.sessions]


# ------------------------------------------------------------------ chunks
def chunk_to_pb(chunk: JSON) -> pb.ChatMessageChunk:
    out = pb.ChatMessageChunk(chunk=convert.chat_chunk_to_pb(chunk))
    info = chunk.get("olol")
    if isinstance(info, dict):
        out.turn.CopyFrom(
            pb.TurnInfo(
                session_id=str(info.get("session", "")),
                host=str(info.get("host", "")),
                trimmed=int(info.get("trimmed", 0)),
                context_length=int(info.get("context_length", 0)),
                prompt_tokens=int(info.get("prompt_tokens", 0)),
            )
        )
    return out


def chunk_from_pb(msg: pb.ChatMessageChunk) -> JSON:
    out = convert.chat_chunk_from_pb(msg.chunk)
    if msg.HasField("turn"):
        t = msg.turn
        out["olol"] = {
            "session": t.session_id,
            "host": t.host,
            "trimmed": t.trimmed,
            "context_length": t.context_length,
            "prompt_tokens": t.prompt_tokens,
        }
    return out
