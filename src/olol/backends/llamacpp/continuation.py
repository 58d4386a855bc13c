"""Token ids in and out of llama-server, so a stream can be resumed exactly (olol.proxy.resume).

llama-server's native `/completion` returns the ids of the tokens it generates
(`return_tokens`) and takes a prompt mixing text and ids (`["<templated prompt>", 17, 923]`).
A host that streams ids lets the proxy hand them to another llama.cpp host, which continues
after exactly those tokens: a greedy answer goes on as it would have, where re-tokenizing the
text could split it differently. Chat streams through `/v1/chat/completions` carry no ids, so a
plain chat (no tools, no format, no thinking, no images: nothing llama-server's chat parser is
needed for) goes through the model's template (`/apply-template`, the same rendering
`/v1/chat/completions` does) and `/completion` instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from olol.cluster.backend import JSON
from olol.wire.tokens import RESUME_TOKENS, TokenChunk, token_ids, with_token_ids

__all__ = ["TokenIds", "as_chat_chunk", "completion_prompt", "plain_chat", "resume_ids", "template_messages"]

# Words of a chat template that handles reasoning: its output needs llama-server's reasoning parser.
_REASONING_MARKS = ("reasoning", "think")


def resume_ids(request: Mapping[str, Any]) -> list[int]:
    """The generated ids a resumed request continues after (empty for a fresh request)."""
    ids = request.get(RESUME_TOKENS) or []
    return [int(i) for i in ids] if isinstance(ids, list) else []


def completion_prompt(prompt: str, request: Mapping[str, Any]) -> str | list[str | int]:
    """`/completion`'s prompt: the text, then the ids generated so far when resuming."""
    ids = resume_ids(request)
    return [prompt, *ids] if ids else prompt


def plain_chat(request: Mapping[str, Any], props: Mapping[str, Any]) -> bool:
    """Whether a chat needs nothing of llama-server's chat parser, so `/completion` can serve it."""
    if request.get("tools") or request.get("format") or request.get("think") is not None:
        return False
    if any(isinstance(m, dict) and m.get("images") for m in request.get("messages") or []):
        return False
    caps = props.get("chat_template_caps") or {}
    if caps.get("supports_preserve_reasoning") or caps.get("supports_reasoning_effort"):
        return False
    template = str(props.get("chat_template") or "").lower()
    return not any(mark in template for mark in _REASONING_MARKS)


def template_messages(request: Mapping[str, Any]) -> list[JSON]:
    """The messages to render: a resume's final assistant message is replaced by its ids."""
    messages = [m for m in request.get("messages") or [] if isinstance(m, dict)]
    if resume_ids(request) and messages and messages[-1].get("role") == "assistant":
        messages = messages[:-1]
    return messages


class TokenIds:
    """Ids from `/completion` events, handed on with the next chunk that has text.

    An event may carry ids but no text (llama-server holds back an incomplete UTF-8 character),
    so ids wait for the chunk their text arrives in.
    """

    def __init__(self) -> None:
        self._pending: list[int] = []

    def take(self, event: Mapping[str, Any]) -> None:
        tokens = event.get("tokens")
        if isinstance(tokens, list):
            self._pending.extend(int(t) for t in tokens)

    def attach(self, chunk: JSON) -> TokenChunk:
        out = with_token_ids(chunk, self._pending)
        self._pending = []
        return out


def as_chat_chunk(chunk: JSON) -> JSON:
    """A `/api/generate` chunk of the chat's rendered prompt as the `/api/chat` chunk it stands for."""
    out: JSON = {"model": chunk.get("model"), "created_at": chunk.get("created_at"),
                 "message": {"role": "assistant", "content": chunk.get("response") or ""}}
    out.update((k, v) for k, v in chunk.items() if k not in ("model", "created_at", "response", "context"))
    ids = token_ids(chunk)
    return with_token_ids(out, ids) if ids is not None else out
