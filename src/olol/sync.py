"""`OllamaClient`: the blocking twin of `olol.aio.AsyncOllamaClient`, same methods and types.

It runs the async client on a private event loop thread, so it works from any
plain script (and from inside a program that has its own loop elsewhere).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from olol.aio import AsyncOllamaClient
from olol.bridge import LoopThread
from olol.client.models import ChatResponse, EmbedResponse, GenerateResponse, ModelEntry, ProgressResponse
from olol.client.sessions import ChatSession

__all__ = ["OllamaClient"]


class OllamaClient:
    def __init__(
        self,
        host: str = "localhost",
        port: int = 50051,
        *,
        url: str | None = None,
        api_key: str | None = None,
        token: str | None = None,
        ca: str | Path | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        verify: bool = True,
    ) -> None:
        """As `AsyncOllamaClient`: `api_key`, `token`, `ca`/`cert`/`key`, `verify` for a secured cluster."""
        self._loop = LoopThread("olol-client-loop")
        secured = {"api_key": api_key, "token": token, "ca": ca, "cert": cert, "key": key, "verify": verify}
        try:
            # Created on the loop: gRPC's asyncio channel binds to the loop it is made on.
            self._client: AsyncOllamaClient = self._loop.call(_make(host, port, url, secured))
        except BaseException:  # bad arguments (a missing CA file) must not leave the loop thread running
            self._loop.stop()
            raise

    def __enter__(self) -> OllamaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.running:
            self._loop.call(self._client.close())
            self._loop.stop()

    def _iterate(self, make: Any) -> Iterator[Any]:
        return self._loop.iterate(make, lambda _cb: None)

    def generate(self, model: str, prompt: str, **kwargs: Any) -> Iterator[GenerateResponse]:
        return self._iterate(lambda: self._client.generate(model, prompt, **kwargs))

    def chat(self, model: str, messages: list[dict[str, Any]], **kwargs: Any) -> Iterator[ChatResponse]:
        return self._iterate(lambda: self._client.chat(model, messages, **kwargs))

    def embed(self, model: str, input: str | list[str], **kwargs: Any) -> EmbedResponse:
        return self._loop.call(self._client.embed(model, input, **kwargs))

    def list(self) -> list[ModelEntry]:
        return self._loop.call(self._client.list())

    def pull(self, model: str, **kwargs: Any) -> Iterator[ProgressResponse]:
        return self._iterate(lambda: self._client.pull(model, **kwargs))

    def session(self, model: str, **opts: Any) -> ChatSession:
        """A chat session the proxy remembers, created now (see `AsyncOllamaClient.session`)."""
        # Started on the loop: the gRPC channel it may open binds to the loop it is made on.
        return ChatSession(self._loop, self._loop.call(self._client.session(model, **opts).start()))


async def _make(host: str, port: int, url: str | None, secured: dict[str, Any]) -> AsyncOllamaClient:
    return AsyncOllamaClient(host, port, url=url, **secured)
