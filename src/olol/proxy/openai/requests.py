"""OpenAI request bodies -> native Ollama requests, as Ollama's own `/v1` layer translates them."""

from __future__ import annotations

import json
from typing import Any

from olol.cluster.backend import JSON
from olol.errors import BadRequest

__all__ = ["chat_request", "completion_request", "embed_request"]

# OpenAI sampling fields that map one-to-one onto Ollama options.
_OPTIONS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "seed": "seed",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
}


def _options(body: JSON) -> JSON:
    options: JSON = {ollama: body[oai] for oai, ollama in _OPTIONS.items() if body.get(oai) is not None}
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        options["num_predict"] = max_tokens
    stop = body.get("stop")
    if stop is not None:
        options["stop"] = [stop] if isinstance(stop, str) else list(stop)
    return options


def _format(body: JSON) -> Any:
    fmt = body.get("response_format") or {}
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        return (fmt.get("json_schema") or {}).get("schema")
    return None


def _image(part: JSON) -> str:
    url = part.get("image_url")
    url = url.get("url") if isinstance(url, dict) else url
    if not isinstance(url, str) or not url.startswith("data:") or "," not in url:
        raise BadRequest("invalid image input: only base64 data URLs are supported")
    return url.split(",", 1)[1]


def _message(message: JSON, tool_names: dict[str, str]) -> JSON:
    out: JSON = {"role": message.get("role", "user")}
    content = message.get("content")
    if isinstance(content, list):
        texts = [str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"]
        images = [_image(p) for p in content if isinstance(p, dict) and p.get("type") == "image_url"]
        out["content"] = "\n".join(texts)
        if images:
            out["images"] = images
    else:
        out["content"] = content or ""
    if message.get("reasoning"):
        out["thinking"] = message["reasoning"]
    calls = []
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        arguments = function.get("arguments") or "{}"
        try:
            parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
        except ValueError:
            raise BadRequest(f"invalid tool call arguments: {arguments!r}") from None
        tool_names[str(call.get("id", ""))] = str(function.get("name", ""))
        calls.append({"function": {"name": function.get("name", ""), "arguments": parsed}})
    if calls:
        out["tool_calls"] = calls
    if out["role"] == "tool":
        name = message.get("name") or tool_names.get(str(message.get("tool_call_id", "")))
        if name:
            out["tool_name"] = name
    return out


def chat_request(body: JSON) -> JSON:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("[] is too short - 'messages'")
    tool_names: dict[str, str] = {}
    native: JSON = {
        "model": body.get("model", ""),
        "messages": [_message(m, tool_names) for m in messages if isinstance(m, dict)],
        "stream": bool(body.get("stream", False)),
        "options": _options(body),
    }
    if body.get("tools"):
        native["tools"] = body["tools"]
    fmt = _format(body)
    if fmt is not None:
        native["format"] = fmt
    effort = body.get("reasoning_effort")
    if effort is not None:
        native["think"] = False if effort == "none" else effort
    return native


def completion_request(body: JSON) -> JSON:
    prompt = body.get("prompt", "")
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise BadRequest("invalid prompt: only a single string prompt is supported")
        prompt = prompt[0]
    native: JSON = {
        "model": body.get("model", ""),
        "prompt": prompt,
        "stream": bool(body.get("stream", False)),
        "options": _options(body),
    }
    if body.get("suffix"):
        native["suffix"] = body["suffix"]
    return native


def embed_request(body: JSON) -> JSON:
    inputs = body.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
        raise BadRequest("invalid input type: input must be a string or a list of strings")
    native: JSON = {"model": body.get("model", ""), "input": inputs}
    if body.get("dimensions"):
        native["dimensions"] = body["dimensions"]
    return native
