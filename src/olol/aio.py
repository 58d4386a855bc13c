"""`AsyncOllamaClient`: the seed's asyncio client (the seed called the module `olol.async`,
which cannot exist: `async` is a Python keyword).

It talks to an agent over gRPC (`"host:50051"`) or to a proxy / any Ollama over
HTTP (`"http://host:8000"`), and yields typed objects (`.response`, `.done`,
`.total_duration`, ...). A secured cluster takes `api_key=` (the proxy's HTTP
API), `token=` (an agent's gRPC API) and `ca=` (plus `cert=`/`key=` for mutual
TLS); see `olol.client.credentials`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from olol.backends.factory import is_ollama_url, make_backend
from olol.client.credentials import ClientCredentials
from olol.client.models import (
    ChatResponse,
    EmbedResponse,
    GenerateResponse,
    ModelEntry,
    ProgressResponse,
    from_json,
)
from olol.client.session_transport import SessionTransport, session_transport
from olol.client.sessions import AsyncChatSession
from olol.cluster.backend import Backend

__all__ = ["AsyncOllamaClient"]


def backend_for(target: str, credentials: ClientCredentials | None = None) -> Backend:
    creds = credentials or ClientCredentials()
    if is_ollama_url(target):
        return make_backend(target, headers=creds.http_headers(), ssl=creds.ssl_context() or True)
    return make_backend(target, token=creds.token, tls=creds.tls())


class AsyncOllamaClient:
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
        self.target = url or f"{host}:{port}"
        self.credentials = ClientCredentials(api_key=api_key, token=token, ca=ca, cert=cert, key=key, verify=verify)
        self._backend = backend_for(self.target, self.credentials)
        self._sessions: SessionTransport | None = None  # opened by the first `session()`

    async def __aenter__(self) -> AsyncOllamaClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._backend.close()
        if self._sessions is not None:
            await self._sessions.close()

    async def generate(self, model: str, prompt: str, **kwargs: Any) -> AsyncIterator[GenerateResponse]:
        """Stream a completion; the last item has `done=True` and the final stats."""
        async for chunk in self._backend.generate({"model": model, "prompt": prompt, **kwargs}):
            yield from_json(GenerateResponse, chunk)

    async def chat(self, model: str, messages: list[dict[str, Any]], **kwargs: Any) -> AsyncIterator[ChatResponse]:
        async for chunk in self._backend.chat({"model": model, "messages": messages, **kwargs}):
            yield ChatResponse.parse(chunk)

    async def embed(self, model: str, input: str | list[str], **kwargs: Any) -> EmbedResponse:
        return from_json(EmbedResponse, await self._backend.embed({"model": model, "input": input, **kwargs}))

    async def list(self) -> list[ModelEntry]:
        return [from_json(ModelEntry, m) for m in await self._backend.list_models()]

    async def pull(self, model: str, **kwargs: Any) -> AsyncIterator[ProgressResponse]:
        async for line in self._backend.pull({"model": model, **kwargs}):
            yield from_json(ProgressResponse, line)

    def session(self, model: str, **opts: Any) -> AsyncChatSession:
        """A chat session the proxy remembers: `s.chat(message)` (streamed) or `await s.ask(message)`.

        Needs a proxy: its HTTP URL, or `host:port` of its `--grpc-port`. `opts`: system,
        options, messages (history to start from), keep_alive, or session_id to resume one.
        """
        if self._sessions is None:
            self._sessions = session_transport(self.target, self.credentials)
        return AsyncChatSession(self._sessions, model, **opts)
