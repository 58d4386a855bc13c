"""Native Ollama replies -> OpenAI response objects, chunks and errors."""

from __future__ import annotations

import base64
import json
import secrets
import struct
import time
from datetime import datetime
from typing import Any

from olol.cluster.backend import JSON
from olol.wire.errors import error_body

__all__ = [
    "ChatStreamState",
    "chat_completion",
    "completion",
    "completion_chunk",
    "embeddings",
    "error_body",
    "model_object",
    "new_id",
]

FINGERPRINT = "fp_ollama"


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.randbelow(1000):03d}{secrets.token_hex(4)}"


def _usage(final: JSON) -> JSON:
    prompt = int(final.get("prompt_eval_count") or 0)
    done = int(final.get("eval_count") or 0)
    usage: JSON = {"prompt_tokens": prompt, "completion_tokens": done, "total_tokens": prompt + done}
    cached = final.get("prompt_eval_cached_count")
    if isinstance(cached, int):  # as Ollama's own OpenAI bridge reports it (openai/openai.go)
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return usage


def _finish(final: JSON, tool_calls: bool) -> str | None:
    if not final.get("done"):
        return None
    if tool_calls:
        return "tool_calls"
    return "length" if final.get("done_reason") == "length" else "stop"


def _tool_calls(calls: list[JSON], start: int = 0) -> list[JSON]:
    out = []
    for i, call in enumerate(calls, start):
        function = call.get("function") or {}
        out.append({
            "id": call.get("id") or f"call_{secrets.token_hex(4)}",
            "index": i,
            "type": "function",
            "function": {"name": function.get("name", ""),
                         "arguments": json.dumps(function.get("arguments") or {})},
        })
    return out


def chat_completion(reply: JSON, cid: str, created: int) -> JSON:
    message = reply.get("message") or {}
    calls = _tool_calls(message.get("tool_calls") or [])
    out_message: JSON = {"role": "assistant", "content": message.get("content", "")}
    if message.get("thinking"):
        out_message["reasoning"] = message["thinking"]
    if calls:
        out_message["tool_calls"] = calls
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": reply.get("model", ""),
        "system_fingerprint": FINGERPRINT,
        "choices": [{"index": 0, "message": out_message, "finish_reason": _finish(reply, bool(calls))}],
        "usage": _usage(reply),
    }


class ChatStreamState:
    """Per-stream memory a chunk translation needs: the id, the role sent once, tool-call numbering."""

    def __init__(self, cid: str, created: int, include_usage: bool) -> None:
        self.cid = cid
        self.created = created
        self.include_usage = include_usage
        self._tool_calls = 0

    def chunks(self, native: JSON) -> list[JSON]:
        message = native.get("message") or {}
        delta: JSON = {"role": "assistant", "content": message.get("content", "")}
        if message.get("thinking"):
            delta["reasoning"] = message["thinking"]
        calls = _tool_calls(message.get("tool_calls") or [], self._tool_calls)
        if calls:
            delta["tool_calls"] = calls
            self._tool_calls += len(calls)
        out = [self._chunk(native, [{"index": 0, "delta": delta,
                                     "finish_reason": _finish(native, self._tool_calls > 0)}])]
        if native.get("done") and self.include_usage:
            out.append({**self._chunk(native, []), "usage": _usage(native)})
        return out

    def _chunk(self, native: JSON, choices: list[JSON]) -> JSON:
        return {
            "id": self.cid,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": native.get("model", ""),
            "system_fingerprint": FINGERPRINT,
            "choices": choices,
        }


def completion(reply: JSON, cid: str, created: int) -> JSON:
    return {
        "id": cid,
        "object": "text_completion",
        "created": created,
        "model": reply.get("model", ""),
        "system_fingerprint": FINGERPRINT,
        "choices": [{"text": reply.get("response", ""), "index": 0, "logprobs": None,
                     "finish_reason": _finish(reply, False)}],
        "usage": _usage(reply),
    }


def completion_chunk(native: JSON, cid: str, created: int) -> JSON:
    chunk = completion(native, cid, created)
    del chunk["usage"]
    return chunk


def _encode(vector: list[float], encoding: str | None) -> Any:
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


def embeddings(reply: JSON, model: str, encoding: str | None) -> JSON:
    vectors = reply.get("embeddings") or []
    tokens = int(reply.get("prompt_eval_count") or 0)
    return {
        "object": "list",
        "data": [{"object": "embedding", "embedding": _encode(v, encoding), "index": i}
                 for i, v in enumerate(vectors)],
        "model": reply.get("model") or model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _created(entry: JSON) -> int:
    stamp = entry.get("modified_at")
    if isinstance(stamp, str):
        try:
            return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())
        except ValueError:
            pass
    return int(time.time())


def model_object(entry: JSON) -> JSON:
    name = str(entry.get("name") or entry.get("model") or "")
    owner = name.split("/", 1)[0] if "/" in name else "library"
    return {"id": name, "object": "model", "created": _created(entry), "owned_by": owner}
