"""Token ids riding along with Ollama-shaped chunks, for exact resumes on llama.cpp hosts.

A llama.cpp host knows the ids of the tokens it generates; another llama.cpp host given those
ids continues a greedy answer exactly as the first would have, where re-tokenizing the text
may split it differently. The ids travel beside the chunk (an attribute, like `RawChunk`'s
bytes), never in its JSON: clients see Ollama's chunks unchanged. A request asks for a
continuation with `RESUME_TOKENS`, a key only the proxy sets and only llama.cpp hosts get.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["RESUME_TOKENS", "TokenChunk", "token_ids", "with_token_ids"]

#: Request key: the ids generated so far, to continue after (olol.proxy.resume).
RESUME_TOKENS = "olol_resume_tokens"


class TokenChunk(dict[str, Any]):
    """A chunk and `token_ids`, the ids of the tokens its text came from."""

    __slots__ = ("token_ids",)

    token_ids: list[int]


def with_token_ids(chunk: dict[str, Any], ids: Iterable[int]) -> TokenChunk:
    out = TokenChunk(chunk)
    out.token_ids = list(ids)
    return out


def token_ids(chunk: dict[str, Any]) -> list[int] | None:
    """The chunk's token ids, or None when its host did not say."""
    return getattr(chunk, "token_ids", None)
