"""Translation between Ollama's JSON and llama-server's, kept apart from the HTTP code.

Pure functions only: the backend (`olol.backends.llamacpp.backend`) moves bytes, this
module decides what they mean, so each mapping is testable without a server.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from olol.cluster.backend import JSON

# The cluster's one normaliser (`tiny` -> `tiny:latest`, case and default registry folded), under the
# name this adapter's modules call it by.
from olol.cluster.names import normalize as normalize_model_name
from olol.errors import BadRequest
from olol.wire.values import rfc3339_from_ns

__all__ = [
    "ToolCallAccumulator",
    "chat_messages",
    "done_reason",
    "final_stats",
    "format_params",
    "normalize_model_name",
    "rfc3339",
    "sampling_params",
]

# Ollama option -> llama-server request field. Options that configure the
# process rather than a request (num_ctx, num_gpu, num_thread, use_mmap, ...) are
# fixed when llama-server starts and are ignored here, as Ollama ignores options
# a runner does not know.
_OPTION_FIELDS = {
    "num_predict": "n_predict",
    "num_keep": "n_keep",
    "temperature": "temperature",
    "top_k": "top_k",
    "top_p": "top_p",
    "min_p": "min_p",
    "typical_p": "typical_p",
    "repeat_last_n": "repeat_last_n",
    "repeat_penalty": "repeat_penalty",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "seed": "seed",
    "stop": "stop",
    "mirostat": "mirostat",
    "mirostat_tau": "mirostat_tau",
    "mirostat_eta": "mirostat_eta",
}

# Ollama's keep_alive=-1 is "forever": it reports now + max Go duration (~292 years).
_FOREVER = timedelta(days=292 * 365)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def rfc3339(moment: datetime | None = None) -> str:
    """`moment` (now by default) as Ollama writes times: one formatter for every API (`rfc3339_from_ns`)."""
    moment = moment or datetime.now(UTC)
    return rfc3339_from_ns((moment - _EPOCH) // _MICROSECOND * 1000)


def far_future() -> str:
    return rfc3339(datetime.now(UTC) + _FOREVER)


def sampling_params(options: Mapping[str, Any] | None) -> JSON:
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise BadRequest("options must be an object")
    out: JSON = {}
    for key, value in options.items():
        target = _OPTION_FIELDS.get(key)
        if target is None or value is None:
            continue
        if key == "stop" and isinstance(value, str):
            value = [value]
        out[target] = value
    return out


def format_params(fmt: Any, *, chat: bool) -> JSON:
    """Ollama `format` ("json" or a JSON schema) as llama-server's constrained decoding."""
    if fmt in (None, ""):
        return {}
    if fmt == "json":
        schema: JSON = {}
    elif isinstance(fmt, Mapping):
        schema = dict(fmt)
    else:
        raise BadRequest(f'invalid format: {fmt!r} (expected "json" or a JSON schema)')
    if not chat:
        return {"json_schema": schema}
    if not schema:
        return {"response_format": {"type": "json_object"}}
    return {"response_format": {"type": "json_schema", "json_schema": {"name": "format", "schema": schema}}}


def done_reason(*, stop_type: str | None = None, finish_reason: str | None = None, truncated: bool = False) -> str:
    """llama.cpp's stop cause as Ollama's `done_reason` ("stop" or "length")."""
    if truncated or stop_type == "limit" or finish_reason == "length":
        return "length"
    return "stop"  # eos, a stop word, or tool calls all end a turn normally


def final_stats(timings: Mapping[str, Any], *, total_ns: int, load_ns: int) -> JSON:
    """Ollama's final-chunk stats from llama.cpp `timings` (milliseconds -> ns).

    `prompt_eval_count` is the whole prompt (evaluated + reused from the KV
    cache), so clients adding it to `eval_count` get the context actually used;
    `prompt_eval_cached_count` is the part reused (as Ollama reports it, from the
    same `cache_n`), and `prompt_eval_duration` covers only the tokens evaluated.
    """
    cached = int(timings.get("cache_n", 0))
    prompt_n = int(timings.get("prompt_n", 0)) + cached
    return {
        "total_duration": total_ns,
        "load_duration": load_ns,
        "prompt_eval_count": prompt_n,
        "prompt_eval_cached_count": cached,
        "prompt_eval_duration": round(float(timings.get("prompt_ms", 0.0)) * 1e6),
        "eval_count": int(timings.get("predicted_n", 0)),
        "eval_duration": round(float(timings.get("predicted_ms", 0.0)) * 1e6),
    }


def _image_url(data: str) -> str:
    if data.startswith("data:"):
        return data
    # Sniff the base64 of common magic numbers; llama.cpp decodes by content anyway.
    mime = "image/png"
    for prefix, kind in (("/9j/", "jpeg"), ("R0lG", "gif"), ("UklG", "webp")):
        if data.startswith(prefix):
            mime = f"image/{kind}"
    return f"data:{mime};base64,{data}"


def _tool_calls(calls: Any) -> list[JSON]:
    out = []
    for i, call in enumerate(calls or []):
        fn = call.get("function", {})
        args = fn.get("arguments", {})
        out.append(
            {
                "id": call.get("id") or f"call_{i}",
                "type": "function",
                "function": {
                    "name": fn.get("name", ""),
                    "arguments": args if isinstance(args, str) else json.dumps(args),
                },
            }
        )
    return out


def chat_messages(messages: Any, *, vision: bool) -> list[JSON]:
    """Ollama chat messages as OpenAI ones (what `/v1/chat/completions` reads)."""
    if not isinstance(messages, list):
        raise BadRequest("messages must be a list")
    out: list[JSON] = []
    for msg in messages:
        if not isinstance(msg, Mapping) or "role" not in msg:
            raise BadRequest("each message needs a role")
        item: JSON = {"role": msg["role"], "content": msg.get("content") or ""}
        if images := msg.get("images"):
            if not vision:
                raise BadRequest("this model does not support images (llama-server has no --mmproj)")
            parts: list[JSON] = [{"type": "text", "text": item["content"]}] if item["content"] else []
            parts += [{"type": "image_url", "image_url": {"url": _image_url(img)}} for img in images]
            item["content"] = parts
        if msg.get("tool_calls"):
            item["tool_calls"] = _tool_calls(msg["tool_calls"])
        if msg.get("thinking"):
            item["reasoning_content"] = msg["thinking"]
        if msg.get("tool_name"):
            item["name"] = msg["tool_name"]
        if msg.get("tool_call_id"):
            item["tool_call_id"] = msg["tool_call_id"]
        out.append(item)
    return out


class ToolCallAccumulator:
    """Rebuilds whole tool calls from OpenAI streaming deltas (arguments arrive in pieces).

    Ollama sends each call complete, with `arguments` as an object.
    """

    def __init__(self) -> None:
        self._calls: dict[int, JSON] = {}

    def add(self, deltas: list[JSON]) -> None:
        for delta in deltas:
            call = self._calls.setdefault(int(delta.get("index", len(self._calls))), {"name": "", "arguments": ""})
            fn = delta.get("function") or {}
            call["name"] += fn.get("name") or ""
            call["arguments"] += fn.get("arguments") or ""

    def ollama(self) -> list[JSON]:
        out = []
        for index in sorted(self._calls):
            call = self._calls[index]
            try:
                arguments = json.loads(call["arguments"]) if call["arguments"] else {}
            except json.JSONDecodeError:
                arguments = call["arguments"]  # let the client see what the model produced
            out.append({"function": {"index": index, "name": call["name"], "arguments": arguments}})
        return out
