"""NDJSON streaming with Ollama's rules for when headers go out and where errors land."""

from __future__ import annotations

from aiohttp import web

from tests.support.ollama_sim._wire import JSON, _dumps, _json


class _Ndjson:
    """Ollama's streamResponse: headers go out with the first object, so an error before
    any output is a plain JSON error with its own status, and one after output is a final
    `{"error": ...}` line under the 200 already sent. Not streaming, the last object wins."""

    def __init__(self, request: web.Request, stream: bool) -> None:
        self._request = request
        self._stream = stream
        self.response: web.StreamResponse | None = None
        self.last: JSON = {}

    async def _open(self) -> web.StreamResponse:
        if self.response is None:
            response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
            await response.prepare(self._request)
            self.response = response
        return self.response

    async def send(self, obj: JSON) -> None:
        self.last = obj
        if self._stream:
            await (await self._open()).write(_dumps(obj) + b"\n")

    async def error(self, status: int, message: str) -> web.StreamResponse:
        if self.response is None:
            return _json({"error": message}, status)
        await self.response.write(_dumps({"error": message}) + b"\n")
        await self.response.write_eof()
        return self.response

    async def finish(self) -> web.StreamResponse:
        if not self._stream:
            return _json(self.last)
        response = await self._open()  # an empty stream is still a 200 stream
        await response.write_eof()
        return response
