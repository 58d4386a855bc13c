"""Request bodies checked before they reach a handler, with the errors Ollama itself would send.

Ollama decodes bodies with Go's encoding/json, so a body it cannot decode gets
a 400 whose message is Go's: `json: cannot unmarshal string into Go struct
field GenerateRequest.stream of type bool`, `json: unknown field "x"`. The
proxy answers the same way, before any host is involved, so a malformed
request never costs a routing decision and never reaches code that assumes a
well-typed body. JSON Python accepts but Go does not (NaN, Infinity), and
nesting deep enough to exhaust the parser, are 400s too.

Each spec is a row's `body` in the proxy's route table (`olol.proxy.endpoints`), which is also
the source of the OpenAPI description (`olol.proxy.api.openapi`): the published contract and the
check are one. The security gate (`olol.security.http`) runs `parse_body` before any handler.
"""

from __future__ import annotations

import json
import math
import mmap
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from olol.errors import BadRequest
from olol.proxy.api.large_body import loads_large
from olol.security.http import InvalidBody
from olol.wire.json_errors import go_syntax_error
from olol.wire.values import duration_from_json

__all__ = ["MAX_DEPTH", "BodySpec", "InvalidBody", "check_body", "parse_body"]


# ---------------------------------------------------------------------- kinds
# A kind: (Go type name for messages, JSON schema for OpenAPI, check of a non-null value).
@dataclass(frozen=True, eq=False)  # compared by identity: kinds are singletons
class Kind:
    go: str
    schema: Mapping[str, Any]
    check: Callable[[Any], bool]

    @property
    def item(self) -> str | None:
        """The Go type of a list kind's items (for the null-item message), None for other kinds."""
        return self.go[2:] if self.go.startswith("[]") else None


_INT64 = (-(2**63), 2**63 - 1)


def _is_int(v: Any) -> bool:
    # Go decodes into int64: a fraction or a value out of range is refused there too.
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        v = int(v)
    return isinstance(v, int) and not isinstance(v, bool) and _INT64[0] <= v <= _INT64[1]


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _list_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    # A null item is refused (`_null_item` words it): Go would decode it as a zero value, but no client
    # means `"images": [null]`, and every host would then have to cope with the hole.
    return lambda v: isinstance(v, list) and all(x is not None and check(x) for x in v)


def _str(v: Any) -> bool:
    return isinstance(v, str)


def _obj(v: Any) -> bool:
    return isinstance(v, dict)


STRING = Kind("string", {"type": "string"}, _str)
BOOL = Kind("bool", {"type": "boolean"}, lambda v: isinstance(v, bool))
INT = Kind("int", {"type": "integer"}, _is_int)
NUMBER = Kind("float64", {"type": "number"}, _is_num)
OBJECT = Kind("map[string]interface {}", {"type": "object"}, _obj)
ARRAY = Kind("[]interface {}", {"type": "array"}, lambda v: isinstance(v, list))
STRINGS = Kind("[]string", {"type": "array", "items": {"type": "string"}}, _list_of(_str))
INTS = Kind("[]int", {"type": "array", "items": {"type": "integer"}}, _list_of(_is_int))
OBJECTS = Kind("[]map[string]interface {}", {"type": "array", "items": {"type": "object"}}, _list_of(_obj))
STR_MAP = Kind(
    "map[string]string",
    {"type": "object", "additionalProperties": {"type": "string"}},
    lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
)
DURATION = Kind("api.Duration", {"oneOf": [{"type": "string"}, {"type": "number"}]}, lambda v: _str(v) or _is_num(v))
THINK = Kind(
    "api.ThinkValue",
    {"oneOf": [{"type": "boolean"}, {"type": "string", "enum": ["high", "medium", "low"]}]},
    lambda v: isinstance(v, bool) or v in ("high", "medium", "low"),
)
FORMAT = Kind("json.RawMessage", {"oneOf": [{"type": "string"}, {"type": "object"}]}, lambda v: _str(v) or _obj(v))
STR_OR_STRS = Kind(
    "any",
    {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    lambda v: _str(v) or STRINGS.check(v),
)
ANY = Kind("any", {}, lambda v: True)

MESSAGE_FIELDS: dict[str, Kind] = {
    "role": STRING, "content": STRING, "thinking": STRING, "images": STRINGS,
    "tool_calls": OBJECTS, "tool_name": STRING, "tool_call_id": STRING,
}  # fmt: skip
MESSAGES = Kind("[]api.Message", {"type": "array", "items": {"type": "object"}}, _list_of(_obj))
# The objects inside tool calls and tool definitions, as Go decodes them (a string where a struct goes is a 400).
TOOL_CALL_FUNCTION = Kind("api.ToolCallFunction", {"type": "object"}, _obj)
TOOL_CALL_FIELDS: dict[str, Kind] = {"index": INT, "name": STRING, "arguments": OBJECT}
TOOL_FUNCTION = Kind("api.ToolFunction", {"type": "object"}, _obj)
TOOL_FIELDS: dict[str, Kind] = {"name": STRING, "description": STRING, "parameters": OBJECT}

# Ollama's option types (api.Options), with FromMap's error texts; unknown options are ignored, as there.
OPTION_KINDS: dict[str, Kind] = {
    **dict.fromkeys(
        ("num_keep", "seed", "num_predict", "top_k", "repeat_last_n", "mirostat", "num_ctx", "num_batch",
         "num_gpu", "main_gpu", "num_thread"), INT),
    **dict.fromkeys(
        ("top_p", "min_p", "typical_p", "temperature", "repeat_penalty", "presence_penalty", "frequency_penalty",
         "mirostat_tau", "mirostat_eta", "tfs_z"), NUMBER),
    **dict.fromkeys(("penalize_newline", "numa", "low_vram", "f16_kv", "logits_all", "vocab_only", "use_mmap",
                     "use_mlock", "use_numa"), BOOL),
    "stop": STRINGS,
}  # fmt: skip
_OPTION_WORDS = {INT: "integer", NUMBER: "float32", BOOL: "boolean", STRINGS: "array"}


@dataclass(frozen=True)
class BodySpec:
    struct: str  # Go struct name, for error texts
    fields: Mapping[str, Kind]
    #: Refuse unknown top-level fields (native routes; the OpenAI layer ignores unknown ones, as OpenAI's SDKs expect).
    closed: bool = True
    #: Ollama's own request-level checks that need no host (its 400s, word for word).
    rules: tuple[Callable[[dict[str, Any]], str | None], ...] = ()


_NAME_FIELDS = ("model", "name", "from", "source", "destination")
#: Deepest nesting of a body's objects and lists. Go's decoder allows 10,000, but the agents' wire cannot:
#: protobuf refuses a `format` schema (or tool arguments) 35 levels deep, and a 500-deep one exhausts
#: Python's recursion. 32 leaves the deepest placement (`format`, `options`) a margin.
MAX_DEPTH = 32
_DIGEST = re.compile(r"sha256[:-][0-9a-fA-F]{64}")


_NAME_LIMITS = {"host": 350, "namespace": 80, "model": 80, "tag": 80}


def _valid_part(kind: str, part: str) -> bool:
    """Ollama's model.ParseName part rule: ASCII [A-Za-z0-9_] first, then also '-', '.' (not in a namespace)."""
    if not 0 < len(part) <= _NAME_LIMITS[kind] or not (part[0].isascii() and (part[0].isalnum() or part[0] == "_")):
        return False
    allowed = "_-" + ("" if kind == "namespace" else ".") + (":" if kind == "host" else "")
    return all(c.isascii() and (c.isalnum() or c in allowed) for c in part[1:])


def valid_digest(digest: str) -> bool:
    """`sha256:<64 hex>` (or `sha256-...`), Ollama's only digest format: nothing else may name a blob path."""
    return _DIGEST.fullmatch(digest) is not None


def valid_model_name(name: str) -> bool:
    """`[host/][namespace/]model[:tag]`, as Ollama's name check accepts it (before it asks any registry)."""
    path = name.partition("@")[0]  # a digest pin is the registry's business
    *prefix, last = path.split("/")
    model, sep, tag = last.partition(":")
    if len(prefix) > 2 or (sep and not _valid_part("tag", tag)) or not _valid_part("model", model):
        return False
    kinds = ["host", "namespace"][-len(prefix) :] if prefix else []
    return all(_valid_part(kind, part) for kind, part in zip(kinds, prefix, strict=True))


def _model_name(body: dict[str, Any]) -> str | None:
    # Pull, push and create check the name before anything else and answer 400; an empty one is the handler's.
    name = body.get("model") or body.get("name")
    return "invalid model name" if isinstance(name, str) and name and not valid_model_name(name) else None


def _keep_alive(body: dict[str, Any]) -> str | None:
    # A duration past int64 nanoseconds (`1e300`) cannot be told to a host; its type was checked already.
    value = body.get("keep_alive")
    if value is None or not DURATION.check(value):
        return None
    try:
        duration_from_json(value)
    except BadRequest as exc:
        return exc.message
    return None


def _copy_names(body: dict[str, Any]) -> str | None:
    # Ollama's CopyHandler: each name through model.ParseName(...).IsValid(), 400 with Go's %q.
    for key in ("source", "destination"):
        name = body.get(key)
        if isinstance(name, str) and name and not valid_model_name(name):
            return f"{key} {json.dumps(name, ensure_ascii=False)} is invalid"
    return None


def _delete_name(body: dict[str, Any]) -> str | None:
    name = body.get("model") or body.get("name")
    if isinstance(name, str) and name and not valid_model_name(name):
        return f"name {json.dumps(name, ensure_ascii=False)} is invalid"
    return None


def _served_name(body: dict[str, Any]) -> str | None:
    # Generate, chat, embed and show: Ollama answers a name ParseName refuses with 404, not 400.
    name = body.get("model") or body.get("name")
    if isinstance(name, str) and name and not valid_model_name(name):
        raise InvalidBody(f"model '{name}' not found", status=404)
    return None


def _create_source(body: dict[str, Any]) -> str | None:
    # Current Ollama builds from `from` or `files` only (the old `modelfile`/`path` forms are gone).
    if not body.get("from") and not body.get("files"):
        return "neither 'from' or 'files' was specified"
    return None


def _create_digests(body: dict[str, Any]) -> str | None:
    for name, digest in (body.get("files") or {}).items():
        if not _DIGEST.fullmatch(str(digest)):
            return f"invalid digest for {name}: invalid digest format"
    for name, digest in (body.get("adapters") or {}).items():
        if not _DIGEST.fullmatch(str(digest)):
            return f"invalid digest for {name}: invalid digest format"
    return None


_COMMON = {"model": STRING, "keep_alive": DURATION, "options": OBJECT, "stream": BOOL}
GENERATE = BodySpec("GenerateRequest", {
    **_COMMON, "prompt": STRING, "suffix": STRING, "system": STRING, "template": STRING, "context": INTS,
    "raw": BOOL, "format": FORMAT, "images": STRINGS, "think": THINK, "truncate": BOOL, "shift": BOOL,
    "logprobs": BOOL, "top_logprobs": INT, "_debug_render_only": BOOL, "width": INT, "height": INT, "steps": INT,
}, rules=(_served_name, _keep_alive))  # fmt: skip
CHAT = BodySpec("ChatRequest", {
    **_COMMON, "messages": MESSAGES, "tools": OBJECTS, "format": FORMAT, "think": THINK, "truncate": BOOL,
    "shift": BOOL, "logprobs": BOOL, "top_logprobs": INT, "_debug_render_only": BOOL,
}, rules=(_served_name, _keep_alive))  # fmt: skip
EMBED = BodySpec(
    "EmbedRequest", {**_COMMON, "input": STR_OR_STRS, "truncate": BOOL, "dimensions": INT},
    rules=(_served_name, _keep_alive),
)
EMBEDDINGS = BodySpec("EmbeddingRequest", {**_COMMON, "prompt": STRING}, rules=(_served_name, _keep_alive))
_NAMED = {"model": STRING, "name": STRING}
_TRANSFER = {**_NAMED, "insecure": BOOL, "username": STRING, "password": STRING, "stream": BOOL}
CREATE = BodySpec("CreateRequest", {
    **_NAMED, "stream": BOOL, "quantize": STRING, "quantization": STRING, "from": STRING, "files": STR_MAP,
    "adapters": STR_MAP, "template": STRING, "license": STR_OR_STRS, "system": STRING, "parameters": OBJECT,
    "messages": MESSAGES, "renderer": STRING, "parser": STRING, "requires": STRING, "path": STRING,
    "modelfile": STRING,
}, rules=(_model_name, _create_source, _create_digests))  # fmt: skip
SHOW = BodySpec(
    "ShowRequest",
    {**_NAMED, "system": STRING, "template": STRING, "verbose": BOOL, "options": OBJECT},
    rules=(_served_name,),
)

OAI_CHAT = BodySpec("ChatCompletionRequest", {
    "model": STRING, "messages": OBJECTS, "stream": BOOL, "temperature": NUMBER, "top_p": NUMBER, "seed": INT,
    "max_tokens": INT, "max_completion_tokens": INT, "frequency_penalty": NUMBER, "presence_penalty": NUMBER,
    "stop": STR_OR_STRS, "tools": OBJECTS, "response_format": OBJECT, "stream_options": OBJECT, "n": INT,
}, closed=False)  # fmt: skip
OAI_COMPLETION = BodySpec("CompletionRequest", {
    "model": STRING, "prompt": STR_OR_STRS, "suffix": STRING, "stream": BOOL, "temperature": NUMBER,
    "top_p": NUMBER, "seed": INT, "max_tokens": INT, "frequency_penalty": NUMBER, "presence_penalty": NUMBER,
    "stop": STR_OR_STRS, "stream_options": OBJECT, "echo": BOOL, "n": INT,
}, closed=False)  # fmt: skip
OAI_EMBED = BodySpec(
    "EmbedRequest", {"model": STRING, "input": ANY, "dimensions": INT, "encoding_format": STRING}, closed=False
)

# OLOL's placement extensions (olol.proxy.http.placement): replicas, smart quantization, targets.
PULL = BodySpec(
    "PullRequest",
    {**_TRANSFER, "replicas": INT, "min_replicas": INT, "quantize": STRING, "hosts": STRINGS},
    rules=(_model_name,),
)
PUSH = BodySpec("PushRequest", _TRANSFER, rules=(_model_name,))
COPY = BodySpec("CopyRequest", {"source": STRING, "destination": STRING}, rules=(_copy_names,))
DELETE = BodySpec("DeleteRequest", _NAMED, rules=(_delete_name,))


# ---------------------------------------------------------------------- checking
def _json_type(v: Any) -> str:
    """The word Go's decoder uses for what it found."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _refuse_constant(name: str) -> Any:
    raise InvalidBody(f"invalid character '{name[0]}' looking for beginning of value")


# One decoder for every body: `json.loads` with any keyword builds a new decoder (and its scanner) per
# call, which cost about 7x the decoding of a typical small body.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
# Unicode category Cc (C0, DEL, C1), what `unicodedata.category(c) == "Cc"` tests, in one regex pass.
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _loads(raw: bytes | bytearray | mmap.mmap) -> Any:
    """The decoded body. A `bytearray` or `mmap` is consumed: emptied (closed) once decoded to text,
    before that text is parsed.

    So a body is held at most twice at once (its bytes and its text, then its text and the object),
    never three times. (orjson, which parses the bytes in place, peaks as high: measured 2x a 63 MiB
    body over its bytes, as the standard library does without the emptying.) A large body usually
    costs less: see `olol.proxy.api.large_body`, which falls back to this.
    """
    try:
        # Exactly `json.loads(raw, parse_constant=...)`'s steps for bytes: detect UTF-8/16/32, then decode.
        if isinstance(raw, mmap.mmap):  # no `decode`, and `in` looks for one byte only: the same steps spelled out
            text = str(raw, json.detect_encoding(raw[:4]), "surrogatepass")
            surrogates = raw.find(b"\\u") >= 0 or raw.find(b"\xed") >= 0
            raw.close()
        else:
            text = raw.decode(json.detect_encoding(raw), "surrogatepass")
            # Lone surrogates decode in Python but cannot be re-encoded as UTF-8 for a host (or protobuf).
            surrogates = b"\\u" in raw or b"\xed" in raw
            if isinstance(raw, bytearray):
                raw.clear()
        body = _DECODER.decode(text)
        del text
        if surrogates and _has_surrogate(body):
            raise UnicodeError
    except InvalidBody:
        raise
    except RecursionError:
        raise InvalidBody("json: exceeded max depth") from None
    except UnicodeError:
        raise InvalidBody("invalid JSON: invalid UTF-8 or lone surrogate in string") from None
    except json.JSONDecodeError as exc:
        raise InvalidBody(go_syntax_error(exc)) from None
    except ValueError:  # Python's cap on integer digits (4,300): no Ollama field takes such a number
        raise InvalidBody("invalid JSON: a number too long to decode") from None
    return body


_SURROGATE = re.compile("[\ud800-\udfff]")
_BLANK = re.compile(rb"[ \t\n\r\x0b\x0c]*")  # what `bytes.isspace` counts as space


def _has_surrogate(body: Any) -> bool:
    """Whether a key or string holds a lone surrogate (searched in place: encoding a copy costs its size)."""
    todo = [body]
    while todo:
        node = todo.pop()
        if isinstance(node, str):
            if _SURROGATE.search(node):
                return True
        elif isinstance(node, dict):
            todo.extend(node)
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    return False


def _depth_exceeds(body: Any, limit: int) -> bool:
    """Whether objects and lists nest deeper than `limit` (iterative: the body may be arbitrarily deep)."""
    level: list[Any] = [body]
    for _ in range(limit):
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, dict | list)
        ]
        if not level:
            return False
    return True


def _check_field(spec: BodySpec, path: str, kind: Kind, value: Any) -> None:
    if value is not None and not kind.check(value):
        if kind.item is not None and isinstance(value, list) and any(x is None for x in value):
            where = f"{spec.struct}.{path}"
            raise InvalidBody(f"json: cannot unmarshal null into Go struct field {where} of type {kind.item}")
        raise InvalidBody(
            f"json: cannot unmarshal {_json_type(value)} into Go struct field {spec.struct}.{path} of type {kind.go}"
        )


def _check_messages(spec: BodySpec, messages: list[Any]) -> None:
    for message in messages:
        for key, kind in MESSAGE_FIELDS.items():
            _check_field(spec, f"messages.{key}", kind, message.get(key))
        if isinstance(message.get("tool_calls"), list):
            _check_functions(spec, "messages.tool_calls", message["tool_calls"], TOOL_CALL_FUNCTION, TOOL_CALL_FIELDS)


def _check_functions(spec: BodySpec, path: str, items: list[Any], kind: Kind, fields: Mapping[str, Kind]) -> None:
    """Each item's `function` (items are objects already): what an agent's protobuf needs to be well-typed."""
    for item in items:
        function = item.get("function")
        _check_field(spec, f"{path}.function", kind, function)
        if isinstance(function, dict):
            for key, field in fields.items():
                _check_field(spec, f"{path}.function.{key}", field, function.get(key))


def _check_options(options: Mapping[str, Any]) -> None:
    for key, value in options.items():
        kind = OPTION_KINDS.get(key)
        if kind is not None and value is not None and not kind.check(value):
            raise InvalidBody(f"option {key!r} must be of type {_OPTION_WORDS[kind]}".replace("'", '"'))


def parse_body(raw: bytes | bytearray | mmap.mmap, spec: BodySpec | None, *, reject_unknown: bool = True) -> Any:
    """The decoded body, or `InvalidBody`. Without a spec only the JSON itself is checked.

    A `bytearray` or `mmap` is consumed (emptied, or its pages given back, as it is decoded): the
    gate reads a large body into an mmap, which nobody needs once it is decoded.

    An empty body is left to the handler, which answers it the way Ollama does
    (e.g. "missing request body", or a listing for a body-less request).
    """
    if isinstance(raw, mmap.mmap):
        if _BLANK.fullmatch(raw):
            return None
        body = loads_large(raw, _loads)
    elif not raw or raw.isspace():  # not `strip()`: that copies a bytearray, however large
        return None
    else:
        body = _loads(raw)
    if spec is None:
        if isinstance(body, dict | list) and _depth_exceeds(body, MAX_DEPTH):
            raise InvalidBody(f"json: exceeded max depth (at most {MAX_DEPTH} levels of nesting)")
        return body
    return check_body(body, spec, reject_unknown=reject_unknown)


def check_body(body: Any, spec: BodySpec, *, reject_unknown: bool = True) -> dict[str, Any]:
    """`body` (already decoded) if `spec` takes it, else `InvalidBody`: the checks of `parse_body`.

    For bodies a handler builds from another shape (a session turn becomes an /api/chat body).
    """
    if isinstance(body, dict | list) and _depth_exceeds(body, MAX_DEPTH):
        raise InvalidBody(f"json: exceeded max depth (at most {MAX_DEPTH} levels of nesting)")
    if not isinstance(body, dict):
        raise InvalidBody(f"json: cannot unmarshal {_json_type(body)} into Go value of type api.{spec.struct}")
    if reject_unknown and spec.closed:
        for key in body:
            if key not in spec.fields:
                raise InvalidBody(f"json: unknown field {json.dumps(key, ensure_ascii=False)}")
    for key, kind in spec.fields.items():
        if key in body:
            _check_field(spec, key, kind, body[key])
    if spec.fields.get("messages") is MESSAGES and isinstance(body.get("messages"), list):
        _check_messages(spec, body["messages"])
    if spec.closed and spec.fields.get("tools") is OBJECTS and isinstance(body.get("tools"), list):
        _check_functions(spec, "tools", body["tools"], TOOL_FUNCTION, TOOL_FIELDS)
    if isinstance(body.get("options"), dict):
        _check_options(body["options"])
    for key in _NAME_FIELDS:
        value = body.get(key)
        if isinstance(value, str) and _CONTROL_CHARS.search(value):
            # No model is named with control characters, and the name is echoed in response headers.
            raise InvalidBody("invalid model name")
    for rule in spec.rules:
        if (message := rule(body)) is not None:
            raise InvalidBody(message)
    return body
