"""The one interface every inference backend adapter implements.

Payloads are Ollama-shaped JSON objects (`dict`): Ollama's REST API is the
lingua franca of this project. The Ollama adapter passes them through, the
llama.cpp adapter translates, the agent converts them to and from protobuf in
one place (`olol.wire.convert`), and the proxy serves them to HTTP clients.

Conventions every adapter keeps:
* streaming calls are async iterators of Ollama chunks; the last generate/chat
  chunk has `done: true`, `done_reason` and the final stats (durations in ns);
* closing the iterator early (client cancelled) stops the backend's generation;
* failures raise `olol.errors.OlolError` subclasses with Ollama's messages.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from olol.errors import Unsupported
from olol.wire.json_type import JSON

__all__ = ["JSON", "Backend", "BackendInfo"]


@dataclass(frozen=True)
class BackendInfo:
    kind: str  # "ollama" | "llamacpp"
    version: str
    url: str
    parallel: int = 1  # requests the backend serves at once per loaded model
    extra: JSON = field(default_factory=dict)


class Backend(ABC):
    """An inference engine behind one agent."""

    kind: str = "abstract"

    async def start(self) -> None:  # noqa: B027 - optional hook, most adapters connect lazily
        """Open connections / launch processes. Idempotent."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release everything `start` acquired. Idempotent."""

    @abstractmethod
    async def info(self) -> BackendInfo: ...

    @abstractmethod
    async def healthy(self) -> bool: ...

    # ---------------------------------------------------------- inference
    @abstractmethod
    def generate(self, request: JSON) -> AsyncIterator[JSON]: ...

    @abstractmethod
    def chat(self, request: JSON) -> AsyncIterator[JSON]: ...

    @abstractmethod
    async def embed(self, request: JSON) -> JSON:
        """`/api/embed`: request `input` is a str or list of str; returns `embeddings`."""

    # ---------------------------------------------------------- models
    @abstractmethod
    async def list_models(self) -> list[JSON]:
        """`/api/tags` entries."""

    @abstractmethod
    async def running(self) -> list[JSON]:
        """`/api/ps` entries."""

    @abstractmethod
    async def show(self, request: JSON) -> JSON: ...

    def pull(self, request: JSON) -> AsyncIterator[JSON]:
        raise Unsupported(f"{self.kind} backend cannot pull models")

    def push(self, request: JSON) -> AsyncIterator[JSON]:
        raise Unsupported(f"{self.kind} backend cannot push models")

    def create(self, request: JSON) -> AsyncIterator[JSON]:
        raise Unsupported(f"{self.kind} backend cannot create models")

    async def copy(self, source: str, destination: str) -> None:
        raise Unsupported(f"{self.kind} backend cannot copy models")

    async def delete(self, model: str) -> None:
        raise Unsupported(f"{self.kind} backend cannot delete models")

    async def has_blob(self, digest: str) -> bool:
        raise Unsupported(f"{self.kind} backend has no blob store")

    async def push_blob(self, digest: str, chunks: AsyncIterator[bytes]) -> None:
        raise Unsupported(f"{self.kind} backend has no blob store")
