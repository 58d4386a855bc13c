"""What a stream has relayed to its client so far: the text to continue from, and its accounting."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

from olol.cluster.backend import JSON
from olol.wire.tokens import token_ids

__all__ = ["Kind", "Transcript"]

Kind = Literal["generate", "chat"]


@dataclass
class Transcript:
    """The relayed output of one request, across every host that served part of it.

    `tokens` counts chunks that carried output: Ollama and the agents send one chunk per
    generated token, so it is the number of tokens the client has (a host that died never
    sent its own count).
    """

    kind: Kind
    parts: list[str] = field(default_factory=list)
    thinking: bool = False  # thinking text was relayed: a continuation cannot re-send it faithfully
    tool_calls: bool = False  # likewise a tool call
    tokens: int = 0
    #: The ids of every token relayed, while every host so far said them (llama.cpp); else None.
    ids: list[int] | None = field(default_factory=list)
    #: Generation time spent on hosts before the current one (ns), for the final chunk's eval_duration.
    earlier_eval_ns: int = 0
    earlier_tokens: int = 0
    started_ns: int = field(default_factory=time.perf_counter_ns)
    _segment_first_ns: int | None = None
    _segment_last_ns: int = 0

    def add(self, chunk: JSON) -> None:
        if self.kind == "chat":
            message = chunk.get("message") or {}
            text = message.get("content") or ""
            thinking = bool(message.get("thinking"))
            if message.get("tool_calls"):
                self.tool_calls = True
        else:
            text = chunk.get("response") or ""
            thinking = bool(chunk.get("thinking"))
        self.thinking = self.thinking or thinking
        if text:
            self.parts.append(str(text))
            if self.ids is not None:
                ids = token_ids(chunk)
                if ids is None:
                    self.ids = None  # a host that does not say its ids: only the text can be resumed from
                else:
                    self.ids.extend(ids)
        if text or thinking:
            self.tokens += 1
            now = time.perf_counter_ns()
            if self._segment_first_ns is None:
                self._segment_first_ns = now
            self._segment_last_ns = now

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def exact_ids(self) -> list[int] | None:
        """The generated token ids, when every relayed token's id is known."""
        return self.ids if self.ids else None

    @property
    def generated(self) -> int:
        """Tokens generated so far: the ids when known (a chunk may carry several), else the chunks."""
        return len(self.ids) if self.ids else self.tokens

    def host_failed(self) -> None:
        """Close the current host's share: its tokens and generation time count toward the final chunk."""
        if self._segment_first_ns is not None:
            self.earlier_eval_ns += self._segment_last_ns - self._segment_first_ns
        self.earlier_tokens = self.generated
        self._segment_first_ns = None
