"""An Ollama simulator that keeps its models in a real models directory, as Ollama does.

The stock simulator holds blobs in memory and pulls nothing; a LAN copy needs
a source whose files an agent can read, and a benchmark needs pulls that move
real bytes from a registry. This subclass adds exactly that and nothing else:
* `/api/pull` downloads manifest and blobs from a `RegistryStandIn` (none set:
  the registry is unreachable, with the error Ollama gives offline) into
  `models_dir`, verifying sha256, with Ollama's progress lines;
* `/api/blobs/:digest` streams uploads to disk (sha256-checked) instead of memory;
* `/api/create` also writes the manifest, so the new model can be copied on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.placement.models_dir import MODEL, manifest_path, text_layers, write_manifest
from tests.support.ollama_sim import ModelSpec, OllamaSim, SimError, _blob_key, normalize_name

__all__ = ["DiskOllamaSim"]

JSON = dict[str, Any]
_CHUNK = 1 << 20
_PROGRESS_EVERY = 0.05
OFFLINE = (
    'pull model manifest: Get "https://registry.ollama.ai/v2/library/{model}/manifests/{tag}": '
    "dial tcp: lookup registry.ollama.ai: no such host"
)


class DiskOllamaSim(OllamaSim):
    def __init__(self, models_dir: Path, *, registry_url: str | None = None, **knobs: Any) -> None:
        super().__init__(models=[], registry=[], **knobs)
        self.models_dir = models_dir
        self.registry_url = registry_url
        self.bytes_pulled = 0
        self._scan()

    def _blob_path(self, digest: str) -> Path:
        return self.models_dir / "blobs" / digest.replace(":", "-")

    def _scan(self) -> None:
        """Models and blobs already on disk, as Ollama finds them when it starts."""
        for path in (self.models_dir / "blobs").glob("sha256-*"):
            if key := _blob_key(path.name):
                self.blobs[key] = None  # on disk, not in memory
        for path in (self.models_dir / "manifests").glob("*/*/*/*"):
            _, namespace, model, tag = path.relative_to(self.models_dir / "manifests").parts
            name = f"{model}:{tag}" if namespace == "library" else f"{namespace}/{model}:{tag}"
            layers = json.loads(path.read_text()).get("layers") or []
            self.add_model(ModelSpec(name, size=sum(int(la["size"]) for la in layers)))

    # ------------------------------------------------------------- pull from the registry stand-in
    async def _pull_events(self, name: str) -> AsyncIterator[JSON]:
        yield {"status": "pulling manifest"}
        full = normalize_name(name)
        model, _, tag = full.partition(":")
        namespace, _, model = model.rpartition("/")
        if self.registry_url is None:
            raise SimError(500, OFFLINE.format(model=model, tag=tag))
        base = f"{self.registry_url}/v2/{namespace or 'library'}/{model}"
        timeout = aiohttp.ClientTimeout(total=None, connect=5)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as http:
                async with http.get(f"{base}/manifests/{tag}") as resp:
                    if resp.status == 404:
                        raise SimError(500, "pull model manifest: file does not exist")
                    raw = await resp.read()
                manifest = json.loads(raw)
                for layer in [*manifest["layers"], manifest["config"]]:
                    async for event in self._download(http, f"{base}/blobs/{layer['digest']}", layer):
                        yield event
        except aiohttp.ClientError as exc:
            raise SimError(500, f"pull model manifest: {exc}") from None
        yield {"status": "verifying sha256 digest"}
        yield {"status": "writing manifest"}
        path = manifest_path(self.models_dir, full)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw)
        self.add_model(ModelSpec(full, size=sum(int(la["size"]) for la in manifest["layers"])))
        yield {"status": "success"}

    async def _download(self, http: aiohttp.ClientSession, url: str, layer: JSON) -> AsyncIterator[JSON]:
        digest, total = str(layer["digest"]), int(layer["size"])
        event: JSON = {"status": f"pulling {digest[7:19]}", "digest": digest, "total": total}
        target = self._blob_path(digest)
        if target.exists():
            yield {**event, "completed": total}
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + "-partial")
        sha = hashlib.sha256()
        done, last = 0, 0.0
        async with http.get(url) as resp:
            if resp.status != 200:
                raise SimError(500, f"download {digest}: HTTP {resp.status}")
            with open(tmp, "wb") as out:
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    await asyncio.to_thread(_write, out, sha, chunk)
                    done += len(chunk)
                    self.bytes_pulled += len(chunk)
                    if time.monotonic() - last >= _PROGRESS_EVERY or done == total:
                        last = time.monotonic()
                        yield {**event, "completed": done}
        if "sha256:" + sha.hexdigest() != digest:
            tmp.unlink()
            raise SimError(500, f"digest mismatch for {digest}")
        os.replace(tmp, target)
        self.blobs[digest] = None

    # ------------------------------------------------------------- uploads and create, on disk
    async def _post_blob(self, request: web.Request) -> web.StreamResponse:
        digest = request.match_info["digest"]
        key = _blob_key(digest)
        if key is None:
            return web.json_response({"error": "invalid digest format"}, status=400)
        if key in self.blobs:
            return web.Response(status=200)
        target = self._blob_path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + "-upload")
        sha = hashlib.sha256()
        with open(tmp, "wb") as out:
            async for chunk in request.content.iter_chunked(_CHUNK):
                await asyncio.to_thread(_write, out, sha, chunk)
        if "sha256:" + sha.hexdigest() != key:
            tmp.unlink()
            return web.json_response({"error": f'digest mismatch, expected "{digest}"'}, status=400)
        os.replace(tmp, target)
        self.blobs[key] = None
        return web.Response(status=201)

    async def _create_events(self, body: JSON) -> AsyncIterator[JSON]:
        async for event in super()._create_events(body):
            if event.get("status") == "success":
                self._write_created(body)
            yield event

    def _write_created(self, body: JSON) -> None:
        name = normalize_name(str(body.get("model") or body.get("name")))
        layers = []
        for digest in (body.get("files") or {}).values():
            key = str(_blob_key(str(digest)))
            layers.append({"mediaType": MODEL, "digest": key, "size": self._blob_path(key).stat().st_size})
        layers += text_layers(
            self.models_dir,
            template=str(body.get("template") or ""),
            system=str(body.get("system") or ""),
            license_text=str(body.get("license") or ""),
            parameters=body.get("parameters") or None,
        )
        write_manifest(self.models_dir, name, layers)
        with contextlib.suppress(KeyError):
            self.models[name.lower()].size = sum(int(str(la["size"])) for la in layers if la["mediaType"] == MODEL)


def _write(out: Any, sha: Any, data: bytes) -> None:
    out.write(data)
    sha.update(data)
