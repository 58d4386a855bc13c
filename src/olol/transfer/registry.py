"""An Ollama registry read by the agent itself, as a `ManifestSource` for `fetch_model`.

Why the agent downloads rather than asking its Ollama to pull: Ollama writes a
download in up to 16 parallel parts into one pre-sized file and only says which
ranges are done when a part finishes, so no peer could copy from it before the
end. Downloading here, in order, into the same staging file a LAN copy uses,
lets peers follow the file as it grows (`olol.transfer.growing`), and the
model is then installed into Ollama the way a LAN copy is (`/api/blobs` +
`/api/create`). Names resolve as Ollama resolves them:
`[host/][namespace/]model[:tag]`, by default `registry.ollama.ai/library/...`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncGenerator
from typing import Any

import aiohttp

from olol.cluster import normalize
from olol.errors import OlolError
from olol.transfer.blobs import Chunk
from olol.transfer.manifest import ModelManifest, digest_hex, ollama_manifest, text_digests
from olol.transfer.throttle import DEFAULT_CHUNK

__all__ = ["DEFAULT_REGISTRY", "RegistrySource", "registry_path"]

DEFAULT_REGISTRY = "https://registry.ollama.ai"
_ACCEPT = "application/vnd.docker.distribution.manifest.v2+json"
#: Ollama's own wording, which placement reads to tell "not in the registry" from "registry down".
NOT_FOUND = "pull model manifest: file does not exist"


def registry_path(model: str, default: str = DEFAULT_REGISTRY) -> tuple[str, str]:
    """(base URL, `namespace/model`) and the tag folded in as `...:tag`, for `model` as Ollama names it.

    `llama3` -> (default, "library/llama3:latest"); `me/m:1b` -> (default, "me/m:1b");
    `reg.example:5000/me/m:1b` -> ("https://reg.example:5000", "me/m:1b").
    """
    full = normalize(model)
    parts = full.split("/")
    base = default.rstrip("/")
    if len(parts) == 3:  # host/namespace/model:tag
        base = "https://" + parts[0]
        parts = parts[1:]
    if len(parts) == 1:
        parts = ["library", *parts]
    return base, "/".join(parts)


class RegistrySource:
    """Manifests and blobs of models from one registry over HTTP (resumable by Range requests)."""

    def __init__(self, default: str = DEFAULT_REGISTRY, *, timeout: float = 30.0) -> None:
        self.default = default
        self._timeout = aiohttp.ClientTimeout(total=None, connect=timeout, sock_read=timeout)
        self._http: aiohttp.ClientSession | None = None
        self._repos: dict[str, str] = {}  # digest -> blob URL prefix, learnt from the manifest that named it

    async def __aenter__(self) -> RegistrySource:
        self._http = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise RuntimeError("RegistrySource is used as `async with RegistrySource(...)`")
        return self._http

    async def _get(self, url: str, what: str, **kwargs: Any) -> aiohttp.ClientResponse:
        try:
            resp = await self.http.get(url, **kwargs)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise OlolError(f"{what}: {exc or type(exc).__name__}", status=502) from None
        if resp.status == 404:
            resp.release()
            raise OlolError(NOT_FOUND if "manifest" in what else f"{what}: not found", status=404)
        if resp.status >= 400:
            resp.release()
            raise OlolError(f"{what}: HTTP {resp.status} from {url}", status=502)
        return resp

    async def manifest(self, model: str) -> ModelManifest:
        base, path = registry_path(model, self.default)
        repo, _, tag = path.rpartition(":")
        prefix = f"{base}/v2/{repo}"
        resp = await self._get(f"{prefix}/manifests/{tag}", "pull model manifest", headers={"Accept": _ACCEPT})
        async with resp:
            raw = await resp.read()
        try:
            doc: dict[str, Any] = json.loads(raw)
        except ValueError as exc:
            raise OlolError(f"pull model manifest: unreadable reply ({exc})", status=502) from None
        texts: dict[str, str] = {}
        for digest in text_digests(doc):
            blob = await self._get(f"{prefix}/blobs/{digest}", f"download {digest}")
            async with blob:
                texts[digest] = (await blob.read()).decode("utf-8", "replace")
        manifest = ollama_manifest(
            doc, normalize(model), "sha256:" + hashlib.sha256(raw).hexdigest(), lambda d: texts.get(d, "")
        )
        for layer in manifest.layers:
            self._repos[digest_hex(layer.digest)] = prefix
        return manifest

    async def read_blob(self, digest: str, offset: int = 0, chunk_size: int = 0) -> AsyncGenerator[Chunk, None]:
        """The blob from `offset` on, in chunks of `chunk_size` (the last one shorter), as a peer cuts them.

        Cut where a peer would cut them, so peers copying from this host while it
        downloads get the chunks it wrote, with their crc32s, whole.
        """
        prefix = self._repos.get(digest_hex(digest))
        if prefix is None:
            raise OlolError(f"blob {digest} is not in a manifest read from this registry", status=400)
        size = chunk_size or DEFAULT_CHUNK
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        resp = await self._get(f"{prefix}/blobs/{digest}", f"download {digest}", headers=headers)
        async with resp:
            skip = 0 if resp.status == 206 else offset  # a server that ignores Range sends it all
            pos = offset
            pieces: list[bytes] = []
            held = 0
            async for data in resp.content.iter_chunked(size):
                if skip:
                    cut = min(skip, len(data))
                    data, skip = data[cut:], skip - cut
                pieces.append(data)
                held += len(data)
                if held >= size:
                    whole = b"".join(pieces) if len(pieces) > 1 else pieces[0]
                    start = 0
                    while held - start >= size:
                        yield Chunk(pos, whole[start : start + size])
                        pos, start = pos + size, start + size
                    pieces, held = ([whole[start:]], held - start) if held > start else ([], 0)
            if held:
                yield Chunk(pos, b"".join(pieces))
