"""Typed results for the Python clients (`olol.sync`, `olol.aio`): attributes, not dict keys."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = [
    "ChatResponse",
    "EmbedResponse",
    "GenerateResponse",
    "Message",
    "ModelEntry",
    "ProgressResponse",
    "from_json",
]


def from_json(cls: type[T], data: dict[str, Any]) -> T:
    """Build `cls` from an Ollama JSON object, ignoring fields it does not know."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class _Stats:
    total_duration: int = 0
    load_duration: int = 0
    prompt_eval_count: int = 0
    prompt_eval_duration: int = 0
    eval_count: int = 0
    eval_duration: int = 0

    @property
    def tokens_per_second(self) -> float:
        return self.eval_count / (self.eval_duration / 1e9) if self.eval_duration else 0.0


@dataclass
class GenerateResponse(_Stats):
    model: str = ""
    created_at: str = ""
    response: str = ""
    thinking: str = ""
    done: bool = False
    done_reason: str = ""
    context: list[int] = field(default_factory=list)


@dataclass
class Message:
    role: str = "assistant"
    content: str = ""
    thinking: str = ""
    images: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    tool_name: str = ""


@dataclass
class ChatResponse(_Stats):
    model: str = ""
    created_at: str = ""
    message: Message = field(default_factory=Message)
    done: bool = False
    done_reason: str = ""
    olol: dict[str, Any] = field(default_factory=dict)  # the proxy's report on the final chunk (sessions)

    @classmethod
    def parse(cls, data: dict[str, Any]) -> ChatResponse:
        out = from_json(cls, data)
        out.message = from_json(Message, data.get("message") or {})
        return out


@dataclass
class EmbedResponse:
    model: str = ""
    embeddings: list[list[float]] = field(default_factory=list)
    total_duration: int = 0
    load_duration: int = 0
    prompt_eval_count: int = 0


@dataclass
class ModelEntry:
    name: str = ""
    model: str = ""
    modified_at: str = ""
    size: int = 0
    digest: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    olol: dict[str, Any] = field(default_factory=dict)  # the proxy adds where the model is


@dataclass
class ProgressResponse:
    status: str = ""
    digest: str = ""
    total: int = 0
    completed: int = 0
    olol: dict[str, Any] = field(default_factory=dict)
