"""Ollama JSON <-> protobuf, in one place for the agent and every gRPC client.

Each `*_to_pb` validates while it converts, raising `BadRequest` with a message
in Ollama's words, so bad input fails at the edge with a 400, not deep inside.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message as PbMessage

from olol.errors import BadRequest
from olol.proto import pb
from olol.wire.json_type import JSON
from olol.wire.tokens import RESUME_TOKENS, token_ids, with_token_ids
from olol.wire.values import (
    b64decode,
    b64encode,
    dict_to_struct,
    duration_from_json,
    duration_to_json,
    rfc3339_from_ns,
    rfc3339_to_ns,
    struct_to_dict,
)

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

_OPTION_FIELDS = {f.name: f for f in pb.Options.DESCRIPTOR.fields if f.name != "extra"}
# Optional stats (proto3 `optional`) are carried only when the backend reported them.
_OPTIONAL_STATS = [f.name for f in pb.Stats.DESCRIPTOR.fields if f.has_presence]
_STAT_FIELDS = [f.name for f in pb.Stats.DESCRIPTOR.fields if f.name not in _OPTIONAL_STATS]
_DETAIL_FIELDS = [f.name for f in pb.ModelDetails.DESCRIPTOR.fields]


# ----------------------------------------------------------------------- helpers
#: What a client reads when a body passed the checks but cannot be built for a host (the log says why).
INVALID_FOR_HOST = "invalid request: a value has a type or shape the host cannot take"


def _request_builder(convert: F) -> F:
    """A request converter whose every failure is the request's 400.

    A value these converters were not written for (a null where an object belongs, a schema
    nested deeper than protobuf carries) must never surface as an untyped exception: the
    proxy would take that for the host failing.
    """

    @functools.wraps(convert)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return convert(*args, **kwargs)
        except BadRequest:
            raise
        except RecursionError:
            raise BadRequest("invalid request: nested too deeply") from None
        except Exception as exc:
            log.info("request refused by %s", convert.__name__, exc_info=exc)
            raise BadRequest(INVALID_FOR_HOST) from exc

    return guarded  # type: ignore[return-value]


def _require_model(body: JSON) -> str:
    model = body.get("model")
    if not model or not isinstance(model, str):
        raise BadRequest("model is required")
    return model


def _expect(value: Any, kinds: tuple[type, ...], field: str) -> Any:
    # bool is an int in Python but not in JSON: `"num_ctx": true` is a client bug.
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise BadRequest(f"invalid value for {field}: {value!r}")
    return value


# The words Ollama's `Options.FromMap` uses for each option type in its error text.
_TYPE_WORDS = {"TYPE_BOOL": "boolean", "TYPE_FLOAT": "float32", "TYPE_DOUBLE": "float32"}


def _option_error(key: str, field: Any) -> BadRequest:
    if key == "stop":
        word = "array"
    else:
        word = next((w for t, w in _TYPE_WORDS.items() if field.type == getattr(field, t)), "integer")
    return BadRequest(f'option "{key}" must be of type {word}')


@_request_builder
def options_to_pb(options: JSON | None) -> pb.Options:
    """Ollama's options as protobuf. A null option is skipped, as Ollama's `Options.FromMap` skips nil
    (llama-index and langchain send every option they know, unset ones as null)."""
    out = pb.Options()
    if not options:
        return out
    if not isinstance(options, dict):
        raise BadRequest("options must be an object")
    extra: JSON = {}
    for key, value in options.items():
        if value is None:
            continue
        field = _OPTION_FIELDS.get(key)
        if field is None:
            extra[key] = value
            continue
        if key == "stop":
            words = [value] if isinstance(value, str) else value
            if not isinstance(words, list) or not all(isinstance(w, str) or w is None for w in words):
                raise _option_error(key, field)
            out.stop.extend(w for w in words if w is not None)
        elif field.type == field.TYPE_BOOL:
            if not isinstance(value, bool):
                raise _option_error(key, field)
            setattr(out, key, value)
        elif not isinstance(value, int | float) or isinstance(value, bool) or value != value:  # NaN is no number
            raise _option_error(key, field)
        elif field.type in (field.TYPE_FLOAT, field.TYPE_DOUBLE):
            setattr(out, key, float(value))
        else:
            try:
                setattr(out, key, int(value))
            except (OverflowError, ValueError):  # inf, or past the field's range
                raise _option_error(key, field) from None
    if extra:
        out.extra.CopyFrom(dict_to_struct(extra))
    return out


def options_from_pb(options: pb.Options) -> JSON:
    out: JSON = {}
    for name, field in _OPTION_FIELDS.items():
        if name == "stop":
            if options.stop:
                out["stop"] = list(options.stop)
        elif options.HasField(name):
            value = getattr(options, name)
            out[name] = round(value, 6) if field.type == field.TYPE_FLOAT else value
    if options.HasField("extra"):
        out.update(struct_to_dict(options.extra))
    return out


def _format_to_pb(value: Any) -> pb.Format | None:
    if value in (None, ""):
        return None
    if value == "json":
        return pb.Format(json=True)
    if isinstance(value, dict):
        return pb.Format(schema=dict_to_struct(value))
    raise BadRequest(f'invalid format: {value!r} (expected "json" or a JSON schema)')


def _format_from_pb(fmt: pb.Format) -> Any:
    kind = fmt.WhichOneof("kind")
    if kind == "json":
        return "json"
    if kind == "schema":
        return struct_to_dict(fmt.schema)
    return None


def _think_to_pb(value: Any) -> pb.Think | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return pb.Think(enabled=value)
    if isinstance(value, str) and value in ("low", "medium", "high"):
        return pb.Think(level=value)
    raise BadRequest(f"invalid think value: {value!r}")


def _think_from_pb(think: pb.Think) -> Any:
    kind = think.WhichOneof("kind")
    return getattr(think, kind) if kind else None


def _common_to_pb(body: JSON, msg: Any) -> None:
    """Fields generate, chat and embed share."""
    if "options" in body:
        msg.options.CopyFrom(options_to_pb(body["options"]))
    if body.get("keep_alive") is not None:
        msg.keep_alive = duration_from_json(body["keep_alive"])
    fmt = _format_to_pb(body.get("format")) if hasattr(msg, "format") else None
    if fmt is not None:
        msg.format.CopyFrom(fmt)
    think = _think_to_pb(body.get("think")) if hasattr(msg, "think") else None
    if think is not None:
        msg.think.CopyFrom(think)


def _common_from_pb(msg: Any, out: JSON) -> JSON:
    if msg.HasField("options"):
        opts = options_from_pb(msg.options)
        if opts:
            out["options"] = opts
    if msg.HasField("keep_alive"):
        out["keep_alive"] = duration_to_json(msg.keep_alive)
    if hasattr(msg, "format") and msg.HasField("format"):
        out["format"] = _format_from_pb(msg.format)
    if hasattr(msg, "think") and msg.HasField("think"):
        out["think"] = _think_from_pb(msg.think)
    return out


def _images_to_pb(images: Any) -> list[bytes]:
    if images is None:
        return []
    if not isinstance(images, list):
        raise BadRequest("images must be a list of base64 strings")
    return [b64decode(i) if isinstance(i, str) else bytes(i) for i in images]


# ----------------------------------------------------------------------- messages and tools
@_request_builder
def message_to_pb(m: JSON) -> pb.Message:
    if not isinstance(m, dict):
        raise BadRequest("invalid message: expected an object")
    msg = pb.Message(
        role=str(m.get("role") or ""),
        content=str(m.get("content") or ""),
        thinking=str(m.get("thinking") or ""),
        tool_name=str(m.get("tool_name") or ""),
    )
    msg.images.extend(_images_to_pb(m.get("images")))
    for call in m.get("tool_calls") or []:
        fn = call.get("function") or {}
        pc = pb.ToolCall(function=pb.ToolCallFunction(name=str(fn.get("name", ""))))
        pc.function.arguments.CopyFrom(dict_to_struct(fn.get("arguments") or {}))
        if fn.get("index") is not None:
            pc.function.index = int(fn["index"])
        msg.tool_calls.append(pc)
    return msg


def message_from_pb(msg: pb.Message) -> JSON:
    out: JSON = {"role": msg.role, "content": msg.content}
    if msg.thinking:
        out["thinking"] = msg.thinking
    if msg.images:
        out["images"] = [b64encode(i) for i in msg.images]
    if msg.tool_calls:
        calls = []
        for call in msg.tool_calls:
            fn: JSON = {"name": call.function.name, "arguments": struct_to_dict(call.function.arguments)}
            if call.function.HasField("index"):
                fn["index"] = call.function.index
            calls.append({"function": fn})
        out["tool_calls"] = calls
    if msg.tool_name:
        out["tool_name"] = msg.tool_name
    return out


def _tool_to_pb(tool: JSON) -> pb.Tool:
    fn = tool.get("function") or {}
    out = pb.Tool(
        type=str(tool.get("type") or "function"),
        function=pb.ToolFunction(name=str(fn.get("name", "")), description=str(fn.get("description", ""))),
    )
    if fn.get("parameters"):
        out.function.parameters.CopyFrom(dict_to_struct(fn["parameters"]))
    return out


def _tool_from_pb(tool: pb.Tool) -> JSON:
    fn: JSON = {"name": tool.function.name, "description": tool.function.description}
    if tool.function.HasField("parameters"):
        fn["parameters"] = struct_to_dict(tool.function.parameters)
    return {"type": tool.type, "function": fn}


# ----------------------------------------------------------------------- inference requests
@_request_builder
def generate_request_to_pb(body: JSON) -> pb.GenerateRequest:
    msg = pb.GenerateRequest(model=_require_model(body))
    for key in ("prompt", "suffix", "system", "template"):
        if body.get(key) is not None:
            setattr(msg, key, str(_expect(body[key], (str,), key)))
    msg.raw = bool(body.get("raw", False))
    msg.images.extend(_images_to_pb(body.get("images")))
    msg.context.extend(int(t) for t in body.get("context") or [])
    msg.resume_tokens.extend(int(t) for t in body.get(RESUME_TOKENS) or [])
    _common_to_pb(body, msg)
    return msg


def generate_request_from_pb(msg: pb.GenerateRequest) -> JSON:
    out: JSON = {"model": msg.model, "prompt": msg.prompt}
    for key in ("suffix", "system", "template"):
        if getattr(msg, key):
            out[key] = getattr(msg, key)
    if msg.raw:
        out["raw"] = True
    if msg.images:
        out["images"] = [b64encode(i) for i in msg.images]
    if msg.context:
        out["context"] = list(msg.context)
    if msg.resume_tokens:
        out[RESUME_TOKENS] = list(msg.resume_tokens)
    return _common_from_pb(msg, out)


@_request_builder
def chat_request_to_pb(body: JSON) -> pb.ChatRequest:
    msg = pb.ChatRequest(model=_require_model(body))
    messages = body.get("messages") or []
    if not isinstance(messages, list):
        raise BadRequest("messages must be a list")
    msg.messages.extend(message_to_pb(m) for m in messages)
    msg.tools.extend(_tool_to_pb(t) for t in body.get("tools") or [])
    msg.resume_tokens.extend(int(t) for t in body.get(RESUME_TOKENS) or [])
    if body.get("truncate") is not None:
        msg.truncate = bool(body["truncate"])
    _common_to_pb(body, msg)
    return msg


def chat_request_from_pb(msg: pb.ChatRequest) -> JSON:
    out: JSON = {"model": msg.model, "messages": [message_from_pb(m) for m in msg.messages]}
    if msg.tools:
        out["tools"] = [_tool_from_pb(t) for t in msg.tools]
    if msg.HasField("truncate"):
        out["truncate"] = msg.truncate
    if msg.resume_tokens:
        out[RESUME_TOKENS] = list(msg.resume_tokens)
    return _common_from_pb(msg, out)


@_request_builder
def embed_request_to_pb(body: JSON) -> pb.EmbedRequest:
    msg = pb.EmbedRequest(model=_require_model(body))
    data = body.get("input", body.get("prompt"))
    inputs = [data] if isinstance(data, str) else data
    if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
        raise BadRequest("invalid input type")
    msg.input.extend(inputs)
    if body.get("truncate") is not None:
        msg.truncate = bool(body["truncate"])
    if body.get("dimensions"):
        msg.dimensions = int(body["dimensions"])
    _common_to_pb(body, msg)
    return msg


def embed_request_from_pb(msg: pb.EmbedRequest) -> JSON:
    out: JSON = {"model": msg.model, "input": list(msg.input)}
    if msg.HasField("truncate"):
        out["truncate"] = msg.truncate
    if msg.dimensions:
        out["dimensions"] = msg.dimensions
    return _common_from_pb(msg, out)


# ----------------------------------------------------------------------- inference results
def _stats_to_pb(chunk: JSON) -> pb.Stats:
    stats = pb.Stats(**{k: int(chunk.get(k) or 0) for k in _STAT_FIELDS})
    for key in _OPTIONAL_STATS:
        if isinstance(chunk.get(key), int):
            setattr(stats, key, chunk[key])
    return stats


def _stats_into(stats: pb.Stats, out: JSON) -> None:
    for key in _STAT_FIELDS:
        out[key] = getattr(stats, key)
    for key in _OPTIONAL_STATS:
        if stats.HasField(key):
            out[key] = getattr(stats, key)


def generate_chunk_to_pb(chunk: JSON) -> pb.GenerateChunk:
    msg = pb.GenerateChunk(
        model=str(chunk.get("model", "")),
        created_at=rfc3339_to_ns(chunk.get("created_at")),
        response=str(chunk.get("response") or ""),
        thinking=str(chunk.get("thinking") or ""),
        done=bool(chunk.get("done")),
        done_reason=str(chunk.get("done_reason") or ""),
    )
    if msg.done:
        msg.stats.CopyFrom(_stats_to_pb(chunk))
        msg.context.extend(int(t) for t in chunk.get("context") or [])
    msg.token_ids.extend(token_ids(chunk) or ())
    return msg


def generate_chunk_from_pb(msg: pb.GenerateChunk) -> JSON:
    out: JSON = {"model": msg.model, "created_at": rfc3339_from_ns(msg.created_at), "response": msg.response}
    if msg.thinking:
        out["thinking"] = msg.thinking
    out["done"] = msg.done
    if msg.done:
        out["done_reason"] = msg.done_reason
        if msg.context:
            out["context"] = list(msg.context)
        _stats_into(msg.stats, out)
    return with_token_ids(out, msg.token_ids) if msg.token_ids else out


def chat_chunk_to_pb(chunk: JSON) -> pb.ChatChunk:
    msg = pb.ChatChunk(
        model=str(chunk.get("model", "")),
        created_at=rfc3339_to_ns(chunk.get("created_at")),
        message=message_to_pb(chunk.get("message") or {"role": "assistant", "content": ""}),
        done=bool(chunk.get("done")),
        done_reason=str(chunk.get("done_reason") or ""),
    )
    if msg.done:
        msg.stats.CopyFrom(_stats_to_pb(chunk))
        msg.trimmed = int((chunk.get("olol") or {}).get("trimmed") or 0)
    msg.token_ids.extend(token_ids(chunk) or ())
    return msg


def chat_chunk_from_pb(msg: pb.ChatChunk) -> JSON:
    out: JSON = {
        "model": msg.model,
        "created_at": rfc3339_from_ns(msg.created_at),
        "message": message_from_pb(msg.message),
        "done": msg.done,
    }
    if msg.done:
        out["done_reason"] = msg.done_reason
        _stats_into(msg.stats, out)
        if msg.trimmed:
            out["olol"] = {"trimmed": msg.trimmed}
    return with_token_ids(out, msg.token_ids) if msg.token_ids else out


def embed_response_to_pb(body: JSON) -> pb.EmbedResponse:
    msg = pb.EmbedResponse(
        model=str(body.get("model", "")),
        total_duration=int(body.get("total_duration") or 0),
        load_duration=int(body.get("load_duration") or 0),
        prompt_eval_count=int(body.get("prompt_eval_count") or 0),
    )
    msg.embeddings.extend(pb.Embedding(values=v) for v in body.get("embeddings") or [])
    return msg


def embed_response_from_pb(msg: pb.EmbedResponse) -> JSON:
    return {
        "model": msg.model,
        "embeddings": [list(e.values) for e in msg.embeddings],
        "total_duration": msg.total_duration,
        "load_duration": msg.load_duration,
        "prompt_eval_count": msg.prompt_eval_count,
    }


# ----------------------------------------------------------------------- models
def _details_to_pb(d: JSON | None) -> pb.ModelDetails:
    d = d or {}
    out = pb.ModelDetails(**{k: str(d.get(k) or "") for k in _DETAIL_FIELDS if k != "families"})
    out.families.extend(d.get("families") or [])
    return out


def _details_from_pb(d: pb.ModelDetails) -> JSON:
    out: JSON = {k: getattr(d, k) for k in _DETAIL_FIELDS if k != "families"}
    out["families"] = list(d.families) or None
    return out


def model_info_to_pb(m: JSON) -> pb.ModelInfo:
    return pb.ModelInfo(
        name=str(m.get("name", "")),
        model=str(m.get("model") or m.get("name", "")),
        modified_at=rfc3339_to_ns(m.get("modified_at")),
        size=int(m.get("size") or 0),
        digest=str(m.get("digest") or ""),
        details=_details_to_pb(m.get("details")),
    )


def model_info_from_pb(m: pb.ModelInfo) -> JSON:
    return {
        "name": m.name,
        "model": m.model,
        "modified_at": rfc3339_from_ns(m.modified_at),
        "size": m.size,
        "digest": m.digest,
        "details": _details_from_pb(m.details),
    }


def running_to_pb(m: JSON) -> pb.RunningModel:
    return pb.RunningModel(
        name=str(m.get("name", "")),
        model=str(m.get("model") or m.get("name", "")),
        size=int(m.get("size") or 0),
        digest=str(m.get("digest") or ""),
        details=_details_to_pb(m.get("details")),
        expires_at=rfc3339_to_ns(m.get("expires_at")),
        size_vram=int(m.get("size_vram") or 0),
        context_length=int(m.get("context_length") or 0),
    )


def running_from_pb(m: pb.RunningModel) -> JSON:
    out: JSON = {
        "name": m.name,
        "model": m.model,
        "size": m.size,
        "digest": m.digest,
        "details": _details_from_pb(m.details),
        "expires_at": rfc3339_from_ns(m.expires_at),
        "size_vram": m.size_vram,
    }
    if m.context_length:
        out["context_length"] = m.context_length
    return out


def show_to_pb(s: JSON) -> pb.ShowResponse:
    out = pb.ShowResponse(
        modelfile=str(s.get("modelfile") or ""),
        parameters=str(s.get("parameters") or ""),
        template=str(s.get("template") or ""),
        system=str(s.get("system") or ""),
        license=str(s.get("license") or ""),
        details=_details_to_pb(s.get("details")),
        modified_at=rfc3339_to_ns(s.get("modified_at")),
    )
    if s.get("model_info"):
        out.model_info.CopyFrom(dict_to_struct(s["model_info"]))
    out.capabilities.extend(s.get("capabilities") or [])
    out.messages.extend(message_to_pb(m) for m in s.get("messages") or [])
    return out


def show_from_pb(s: pb.ShowResponse) -> JSON:
    out: JSON = {
        "modelfile": s.modelfile,
        "parameters": s.parameters,
        "template": s.template,
        "details": _details_from_pb(s.details),
        "model_info": struct_to_dict(s.model_info),
        "capabilities": list(s.capabilities),
    }
    if s.system:
        out["system"] = s.system
    if s.license:
        out["license"] = s.license
    if s.modified_at:
        out["modified_at"] = rfc3339_from_ns(s.modified_at)
    if s.messages:
        out["messages"] = [message_from_pb(m) for m in s.messages]
    return out


def progress_to_pb(p: JSON) -> pb.Progress:
    return pb.Progress(
        status=str(p.get("status") or ""),
        digest=str(p.get("digest") or ""),
        total=int(p.get("total") or 0),
        completed=int(p.get("completed") or 0),
    )


def progress_from_pb(p: pb.Progress) -> JSON:
    out: JSON = {"status": p.status}
    if p.digest:
        out["digest"] = p.digest
    if p.total:
        out["total"] = p.total
        out["completed"] = p.completed
    return out


@_request_builder
def create_request_to_pb(body: JSON) -> pb.CreateRequest:
    msg = pb.CreateRequest(
        model=_require_model(body),
        template=str(body.get("template") or ""),
        system=str(body.get("system") or ""),
        quantize=str(body.get("quantize") or ""),
    )
    setattr(msg, "from", str(body.get("from") or ""))  # `from` is a Python keyword
    msg.files.update({str(k): str(v) for k, v in (body.get("files") or {}).items()})
    msg.adapters.update({str(k): str(v) for k, v in (body.get("adapters") or {}).items()})
    lic = body.get("license")
    msg.license.extend([lic] if isinstance(lic, str) else lic or [])
    if body.get("parameters"):
        msg.parameters.CopyFrom(dict_to_struct(body["parameters"]))
    msg.messages.extend(message_to_pb(m) for m in body.get("messages") or [])
    return msg


def create_request_from_pb(msg: pb.CreateRequest) -> JSON:
    out: JSON = {"model": msg.model}
    if getattr(msg, "from"):
        out["from"] = getattr(msg, "from")
    for key in ("template", "system", "quantize"):
        if getattr(msg, key):
            out[key] = getattr(msg, key)
    if msg.files:
        out["files"] = dict(msg.files)
    if msg.adapters:
        out["adapters"] = dict(msg.adapters)
    if msg.license:
        out["license"] = list(msg.license)
    if msg.HasField("parameters"):
        out["parameters"] = struct_to_dict(msg.parameters)
    if msg.messages:
        out["messages"] = [message_from_pb(m) for m in msg.messages]
    return out


def pb_to_json(msg: PbMessage) -> JSON:
    """Generic fallback for messages with no Ollama counterpart (host state, hardware)."""
    result: JSON = json_format.MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return result
