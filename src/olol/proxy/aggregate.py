"""`stream: false`: fold a stream of Ollama chunks into the one object Ollama would return.

Ollama itself builds non-streaming replies this way: the final (`done`) chunk
carries the stats, and the text is the concatenation of every chunk's piece.
A host asked for the whole reply sends it as one `done` object: that is the
reply, returned as it is (so the proxy can relay its bytes unchanged).
"""

from __future__ import annotations

from collections.abc import AsyncIterable

from olol.cluster.backend import JSON

__all__ = ["collect_chat", "collect_generate"]


def _whole(first: JSON | None, last: JSON) -> bool:
    return first is last and bool(last.get("done"))


async def collect_generate(chunks: AsyncIterable[JSON]) -> JSON:
    parts: list[str] = []
    thinking: list[str] = []
    first: JSON | None = None
    last: JSON = {}
    async for chunk in chunks:
        first = chunk if first is None else first
        parts.append(str(chunk.get("response") or ""))
        if chunk.get("thinking"):
            thinking.append(str(chunk["thinking"]))
        last = chunk
    if _whole(first, last):
        return last
    result = {**last, "response": "".join(parts)}
    if thinking:
        result["thinking"] = "".join(thinking)
    return result


async def collect_chat(chunks: AsyncIterable[JSON]) -> JSON:
    content: list[str] = []
    thinking: list[str] = []
    tool_calls: list[JSON] = []
    role = "assistant"
    images: list[str] = []
    first: JSON | None = None
    last: JSON = {}
    async for chunk in chunks:
        first = chunk if first is None else first
        message = chunk.get("message") or {}
        role = str(message.get("role") or role)
        content.append(str(message.get("content") or ""))
        if message.get("thinking"):
            thinking.append(str(message["thinking"]))
        tool_calls.extend(message.get("tool_calls") or [])
        images.extend(message.get("images") or [])
        last = chunk
    if _whole(first, last):
        return last
    merged: JSON = {"role": role, "content": "".join(content)}
    if thinking:
        merged["thinking"] = "".join(thinking)
    if tool_calls:
        merged["tool_calls"] = tool_calls
    if images:
        merged["images"] = images
    return {**last, "message": merged}
