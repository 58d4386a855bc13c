"""Chat sessions over HTTP: `/api/sessions` (docs/sessions.md).

POST   /api/sessions              {"model", "system"?, "options"?, "messages"?, "keep_alive"?} -> the session
POST   /api/sessions/{id}/chat    {"message": {...} | "text", "stream"?, "options"?, "format"?, "think"?,
                                   "tools"?, "keep_alive"?} -> Ollama's /api/chat reply (NDJSON or one object)
POST   /api/sessions/{id}/api/chat  the same turn in /api/chat's request shape (`messages`: just the new one),
                                   so Ollama's own clients can use `.../api/sessions/{id}` as their host
GET    /api/sessions/{id}         -> the session with its full history
GET    /api/sessions[?model=m]    -> {"sessions": [...]} without histories, most recently active first
DELETE /api/sessions/{id}         -> {}

Errors are Ollama's: `{"error": ...}` with 400, 404 (`session "x" not found`), 503.
The final chat chunk carries `"olol": {"session", "host", "trimmed", "context_length",
"prompt_tokens"}`; headers say the same (`X-OLOL-Session`, `X-OLOL-Host`, `X-OLOL-Trimmed`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from olol.cluster.backend import JSON
from olol.errors import BadRequest, OlolError
from olol.proxy.aggregate import collect_chat
from olol.proxy.api.bodies import CHAT, InvalidBody, check_body
from olol.proxy.api.table import Route
from olol.proxy.http.io import ctx, json_reply, read_json, require_model, wants_stream, write_ndjson
from olol.security.apikeys import ADMIN
from olol.security.http import API_KEY
from olol.sessions.manager import TURN_KEYS, SessionManager

__all__ = ["ROUTES", "chat", "create", "delete", "get", "list_sessions"]


def _manager(request: web.Request) -> SessionManager:
    service = ctx(request).sessions
    if service is None:
        raise OlolError("chat sessions are not enabled on this proxy", status=501)
    return service.manager


def _owner(request: web.Request) -> str | None:
    """Whose sessions this request may touch: its API key's; None (all) for an admin key or with keys off."""
    key = request.get(API_KEY)
    return None if key is None or key.scope == ADMIN else str(key.name)


def _optional(body: JSON, key: str, kind: type | tuple[type, ...]) -> Any:
    value = body.get(key)
    if value is not None and not isinstance(value, kind):
        raise BadRequest(f"invalid value for {key}: {value!r}")
    return value


def _turn_message(body: JSON) -> Any:
    """The one new message: `message` (an object or plain text), or a one-element `messages`."""
    if "message" in body:
        return body["message"]
    messages = body.get("messages")
    if isinstance(messages, list) and len(messages) == 1:
        return messages[0]
    raise BadRequest("message is required: a session takes one new message a turn")


def _check_as_chat(body: JSON, messages: Any) -> None:
    """What a session passes to a host gets /api/chat's body checks: a turn is a chat request too."""
    chat = {k: body[k] for k in ("model", "options", *TURN_KEYS) if k in body}
    if isinstance(messages, list):
        chat["messages"] = [m for m in messages if not isinstance(m, str)]  # plain text is a user message
    try:
        check_body(chat, CHAT, reject_unknown=False)
    except InvalidBody as exc:
        raise OlolError(str(exc), status=exc.status) from None


async def create(request: web.Request) -> web.Response:
    body = await read_json(request)
    _check_as_chat(body, body.get("messages"))
    manager = _manager(request)
    session = await manager.create(
        require_model(body),
        system=_optional(body, "system", str),
        options=_optional(body, "options", dict),
        messages=_optional(body, "messages", list) or [],
        keep_alive=body.get("keep_alive"),
        owner=_owner(request) or "",
    )
    return json_reply(session.to_json(manager.ttl))


async def chat(request: web.Request) -> web.StreamResponse:
    body = await read_json(request)
    _check_as_chat(body, [_turn_message(body)])
    turn = await _manager(request).open_turn(
        request.match_info["id"],
        _turn_message(body),
        options=_optional(body, "options", dict),
        extra={k: body[k] for k in TURN_KEYS if k in body},
        model=_optional(body, "model", str),
        owner=_owner(request),
    )
    try:
        if wants_stream(body):
            return await write_ndjson(request, turn, turn.headers)
        return json_reply(await collect_chat(turn), headers=turn.headers)
    finally:
        await turn.aclose()


async def get(request: web.Request) -> web.Response:
    manager = _manager(request)
    return json_reply((await manager.get(request.match_info["id"], _owner(request))).to_json(manager.ttl))


async def list_sessions(request: web.Request) -> web.Response:
    manager = _manager(request)
    sessions = await manager.list(request.query.get("model") or None, _owner(request))
    return json_reply({"sessions": [s.summary(manager.ttl) for s in sessions]})


async def delete(request: web.Request) -> web.Response:
    await _manager(request).delete(request.match_info["id"], _owner(request))
    return json_reply({})


#: This module's rows of the proxy's route table (olol.proxy.api.routes).
ROUTES = (
    Route("POST", "/api/sessions", create),
    Route("GET", "/api/sessions", list_sessions),
    Route("GET", "/api/sessions/{id}", get),
    Route("POST", "/api/sessions/{id}/chat", chat),
    # The session as an Ollama host: `ollama.Client(host=".../api/sessions/<id>").chat(model, [new message])`.
    Route("POST", "/api/sessions/{id}/api/chat", chat),
    Route("DELETE", "/api/sessions/{id}", delete),
)
