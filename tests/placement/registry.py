"""A registry stand-in: serves manifests and blobs like registry.ollama.ai, from a models directory.

`rate` caps the bytes/s of all blob downloads together: every host of a site
shares one internet link, which is what makes N independent pulls slow.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from olol.transfer.throttle import BandwidthLimiter
from tests.placement.models_dir import manifest_path

__all__ = ["RegistryStandIn"]

_CHUNK = 1 << 20


class RegistryStandIn:
    def __init__(self, root: Path, *, rate: float | None = None, host: str = "127.0.0.1") -> None:
        self.root = root
        self.host = host
        self.rate = BandwidthLimiter(rate) if rate else None
        self.manifest_requests = 0
        self.blob_requests = 0
        self.bytes_served = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> RegistryStandIn:
        app = web.Application()
        app.router.add_get("/v2/{namespace}/{model}/manifests/{tag}", self._manifest)
        app.router.add_get("/v2/{namespace}/{model}/blobs/{digest}", self._blob)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _manifest(self, request: web.Request) -> web.StreamResponse:
        self.manifest_requests += 1
        m = request.match_info
        path = manifest_path(self.root, f"{m['namespace']}/{m['model']}:{m['tag']}")
        if not path.is_file():
            return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN"}]}, status=404)
        return web.Response(body=path.read_bytes(), content_type="application/vnd.docker.distribution.manifest.v2+json")

    async def _blob(self, request: web.Request) -> web.StreamResponse:
        self.blob_requests += 1
        path = self.root / "blobs" / request.match_info["digest"].replace(":", "-")
        if not path.is_file():
            return web.json_response({"errors": [{"code": "BLOB_UNKNOWN"}]}, status=404)
        response = web.StreamResponse(headers={"Content-Length": str(path.stat().st_size)})
        await response.prepare(request)
        with open(path, "rb") as f:
            while chunk := await asyncio.to_thread(f.read, _CHUNK):
                if self.rate is not None:
                    await self.rate.take(len(chunk))
                await response.write(chunk)
                self.bytes_served += len(chunk)
        await response.write_eof()
        return response
