"""Adapter for an Ollama server: its REST API is already the shape OLOL speaks.

So this is mostly a careful pass-through: stream NDJSON lines back as they come,
turn Ollama's error bodies into typed `OlolError`s, and close the HTTP response
when the caller stops iterating, which makes Ollama stop generating.

Inference (generate, chat, embed) goes over a lean keep-alive HTTP/1.1 client
(`_http1`): it is the proxy's hot path, where aiohttp's client cost more CPU
than the rest of the proxy's routing. Everything else uses aiohttp.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
from yarl import URL

from olol._fast.longstr import has_long
from olol.backends.host_settings import HostSettings
from olol.backends.ollama._http1 import HttpPool, HttpResponse
from olol.cluster.backend import JSON, Backend, BackendInfo
from olol.errors import BackendUnavailable, BadRequest, Busy, ModelNotFound, OlolError
from olol.wire.raw import LONG_STRING, Pieces, RawChunk, raw_bytes

__all__ = ["OllamaBackend", "error_from_response"]

# Generation can legitimately take minutes; connecting must not.
_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=5, sock_connect=5)
_JSON_HEADERS = {"Content-Type": "application/json"}


def _new_session(headers: Mapping[str, str] | None = None, tls: ssl.SSLContext | bool = True) -> aiohttp.ClientSession:
    # No connection cap: a proxy in front of a big host may hold hundreds of streams at once.
    return aiohttp.ClientSession(timeout=_TIMEOUT, connector=aiohttp.TCPConnector(limit=0, ssl=tls), headers=headers)


def _chunk(line: bytes) -> JSON:
    # Kept with its bytes: a proxy relays the line as it came instead of encoding it again.
    chunk = RawChunk.parse(line)
    if "error" in chunk:
        raise OlolError(str(chunk["error"]))
    return chunk


def error_from_response(status: int, body: bytes, model: str = "") -> OlolError:
    """Rebuild Ollama's error from an HTTP error reply, keeping its message and status."""
    try:
        message = str(json.loads(body).get("error", ""))
    except (ValueError, AttributeError):
        message = body.decode(errors="replace").strip()
    message = message or f"HTTP {status}"
    if status == 404 and "not found" in message and model:
        err: OlolError = ModelNotFound(model)
        err.message = message
        err.args = (message,)
        return err
    if status == 400:
        return BadRequest(message)
    if status == 503:
        return Busy(message)
    return OlolError(message, status=status)


def _payload(body: JSON) -> bytes | Pieces:
    """What `_post` sends: the bytes a client's body came as, or its encoding (in pieces when large)."""
    if type(body) is RawChunk and body.raw is not None:
        return body.raw  # a client's body nothing changed on its way: sent as it came
    if has_long(body, LONG_STRING) and (pieces := Pieces.of(body)) is not None:
        return pieces  # encoded a slice at a time while it is written, never whole beside the object
    data = raw_bytes(body)
    if data is None:
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return data


class OllamaBackend(Backend):
    kind = "ollama"

    def __init__(
        self,
        url: str = "http://localhost:11434",
        *,
        parallel: int = 1,
        headers: Mapping[str, str] | None = None,
        ssl: ssl.SSLContext | bool = True,
        settings: HostSettings | None = None,
    ) -> None:
        """`headers` go on every request (a client's API key for a secured proxy); `ssl` is aiohttp's
        (a context trusting the proxy's CA, or False to skip verification). An agent passes its host's
        `settings`: their keep_alive and num_ctx go on requests that set none."""
        self.url = url.rstrip("/")
        if "://" not in self.url:
            self.url = "http://" + self.url
        self._parallel = parallel
        self.settings = settings
        self._headers = dict(headers or {})
        self._ssl = ssl
        self._session: aiohttp.ClientSession | None = None
        self._pool: HttpPool | None = None
        self._urls: dict[str, URL] = {}

    async def start(self) -> None:
        if self._session is None or self._session.closed:
            self._session = _new_session(self._headers, self._ssl)

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # Lazily, so a backend used without start() (e.g. in a one-shot CLI call) still works.
            self._session = _new_session(self._headers, self._ssl)
        return self._session

    @property
    def pool(self) -> HttpPool:
        if self._pool is None:
            self._pool = HttpPool(self.url, headers=self._headers, ssl=self._ssl)
        return self._pool

    # ------------------------------------------------------------------ plumbing
    async def _request(self, method: str, path: str, body: JSON | None = None, model: str = "") -> Any:
        try:
            async with self.session.request(method, self.url + path, json=body) as resp:
                data = await resp.read()
                if resp.status >= 400:
                    raise error_from_response(resp.status, data, model)
                return json.loads(data) if data.strip() else {}
        except aiohttp.ClientConnectionError as exc:
            raise BackendUnavailable(f"cannot reach Ollama at {self.url}: {exc}") from exc

    def _url(self, path: str) -> URL:
        # Parsed once per path: aiohttp would otherwise parse the URL string on every request.
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = URL(self.url + path)
        return url

    async def _post(self, path: str, body: JSON, model: str) -> HttpResponse:
        """POST over the lean client; an error status raises Ollama's error (the connection is kept)."""
        data = _payload(body)
        try:
            resp = await self.pool.post(path, data)
        except OSError as exc:
            raise BackendUnavailable(f"cannot reach Ollama at {self.url}: {exc}") from exc
        if resp.status >= 400:
            try:
                raise error_from_response(resp.status, await resp.read(), model)
            except OSError as exc:
                raise BackendUnavailable(f"Ollama at {self.url} closed the connection: {exc}") from exc
            finally:
                resp.close()
        return resp

    async def _infer(self, path: str, body: JSON) -> AsyncIterator[JSON]:
        """POST a generate/chat call and yield its NDJSON objects; an `{"error"}` line mid-stream raises.

        The body's `stream: false` is sent as it is, so Ollama answers with one object (yielded as
        the only chunk); otherwise the call is always streamed (no `stream` is Ollama's own default
        for that). Closing the iterator early closes the connection, which makes Ollama stop generating.
        """
        stream = body.get("stream", True)
        if stream is not True and stream is not False:
            body = {**body, "stream": True}
        resp = await self._post(path, body, str(body.get("model", "")))
        try:
            while line := await resp.readline():
                if line.strip():
                    yield _chunk(line)
        except OSError as exc:
            raise BackendUnavailable(f"Ollama at {self.url} closed the stream: {exc}") from exc
        finally:
            resp.close()

    async def _stream(self, path: str, body: JSON) -> AsyncIterator[JSON]:
        """POST over aiohttp and yield NDJSON objects (pull, push, create); an `{"error"}` line raises."""
        model = str(body.get("model", ""))
        data = json.dumps({**body, "stream": True}, ensure_ascii=False, separators=(",", ":")).encode()
        try:
            async with self.session.post(self._url(path), data=data, headers=_JSON_HEADERS) as resp:
                if resp.status >= 400:
                    raise error_from_response(resp.status, await resp.read(), model)
                async for line in resp.content:
                    if line.strip():
                        yield _chunk(line)
        except aiohttp.ClientPayloadError as exc:
            raise BackendUnavailable(f"Ollama at {self.url} closed the stream: {exc}") from exc
        except aiohttp.ClientConnectionError as exc:
            raise BackendUnavailable(f"cannot reach Ollama at {self.url}: {exc}") from exc

    # ------------------------------------------------------------------ host
    async def info(self) -> BackendInfo:
        data = await self._request("GET", "/api/version")
        extra = {"settings": self.settings.effective()} if self.settings is not None else {}
        return BackendInfo(
            kind=self.kind, version=str(data.get("version", "")), url=self.url, parallel=self._parallel, extra=extra
        )

    async def healthy(self) -> bool:
        try:
            await self._request("GET", "/api/version")
        except OlolError:
            return False
        return True

    # ------------------------------------------------------------------ inference
    # `stream: false` is passed on: Ollama then sends one object instead of a line per token, which
    # costs both it and the caller far less than streaming a reply only to fold it back together.
    def _defaults(self, request: JSON) -> JSON:
        return self.settings.request_defaults(request) if self.settings is not None else request

    def generate(self, request: JSON) -> AsyncIterator[JSON]:
        return self._infer("/api/generate", self._defaults(request))

    def chat(self, request: JSON) -> AsyncIterator[JSON]:
        return self._infer("/api/chat", self._defaults(request))

    async def embed(self, request: JSON) -> JSON:
        request = self._defaults(request)
        resp = await self._post("/api/embed", request, str(request.get("model", "")))
        try:
            data = await resp.read()
        except OSError as exc:
            raise BackendUnavailable(f"Ollama at {self.url} closed the connection: {exc}") from exc
        finally:
            resp.close()
        result: JSON = json.loads(data) if data.strip() else {}
        return result

    # ------------------------------------------------------------------ models
    async def list_models(self) -> list[JSON]:
        return list((await self._request("GET", "/api/tags")).get("models") or [])

    async def running(self) -> list[JSON]:
        return list((await self._request("GET", "/api/ps")).get("models") or [])

    async def show(self, request: JSON) -> JSON:
        result: JSON = await self._request("POST", "/api/show", request, str(request.get("model", "")))
        return result

    def pull(self, request: JSON) -> AsyncIterator[JSON]:
        return self._stream("/api/pull", request)

    def push(self, request: JSON) -> AsyncIterator[JSON]:
        return self._stream("/api/push", request)

    def create(self, request: JSON) -> AsyncIterator[JSON]:
        return self._stream("/api/create", request)

    async def copy(self, source: str, destination: str) -> None:
        await self._request("POST", "/api/copy", {"source": source, "destination": destination}, source)

    async def delete(self, model: str) -> None:
        await self._request("DELETE", "/api/delete", {"model": model}, model)

    async def has_blob(self, digest: str) -> bool:
        try:
            async with self.session.head(f"{self.url}/api/blobs/{digest}") as resp:
                return resp.status == 200
        except aiohttp.ClientConnectionError as exc:
            raise BackendUnavailable(f"cannot reach Ollama at {self.url}: {exc}") from exc

    async def push_blob(self, digest: str, chunks: AsyncIterator[bytes]) -> None:
        try:
            async with self.session.post(f"{self.url}/api/blobs/{digest}", data=chunks) as resp:
                if resp.status >= 400:
                    raise error_from_response(resp.status, await resp.read())
        except aiohttp.ClientConnectionError as exc:
            raise BackendUnavailable(f"cannot reach Ollama at {self.url}: {exc}") from exc
