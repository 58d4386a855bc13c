"""Model management: pull, push, create, copy, delete, and the blobs `create` refers to.

Pull, push and create answer with progress streams whose lines follow Ollama's
(digests, totals, `completed` omitted while zero), since clients render them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator

from aiohttp import web

from tests.support.ollama_sim._catalogue import ModelSpec
from tests.support.ollama_sim._digests import _blob_key, _blob_of, _sha256
from tests.support.ollama_sim._errors import MODELS_DIR, SimError
from tests.support.ollama_sim._names import _key, _valid_name, normalize_name
from tests.support.ollama_sim._ndjson import _Ndjson
from tests.support.ollama_sim._request import _field, _stream_flag
from tests.support.ollama_sim._scheduler import _Scheduler
from tests.support.ollama_sim._wire import JSON, _json


class _ModelRoutes(_Scheduler):
    """Endpoints that change the local models, the registry or the blob store."""

    async def _progress(self, request: web.Request, stream: bool, events: AsyncIterator[JSON]) -> web.StreamResponse:
        out = _Ndjson(request, stream)
        try:
            async for event in events:
                await out.send(event)
        except SimError as e:
            return await out.error(e.status, e.message)
        return await out.finish()

    def _name_field(self, body: JSON, where: str) -> str:
        return str(_field(body, "model", str, where, "string") or _field(body, "name", str, where, "string") or "")

    async def _pull(self, request: web.Request) -> web.StreamResponse:
        body = await self._read_json(request, "PullRequest")
        name = self._name_field(body, "PullRequest")
        if not _valid_name(name):
            raise SimError(400, "invalid model name")
        return await self._progress(request, _stream_flag(body, "PullRequest"), self._pull_events(name))

    async def _steps(self, verb: str, spec: ModelSpec) -> AsyncIterator[JSON]:
        for digest, total in spec.layers():
            done = sorted({int(total * f) for f in (0.0, 0.25, 0.5, 0.75, 1.0)})
            for completed in done:
                if self.pull_delay > 0:
                    await asyncio.sleep(self.pull_delay)
                event: JSON = {"status": f"{verb} {digest[7:19]}", "digest": digest, "total": total}
                if completed:
                    event["completed"] = completed  # Go's omitempty drops a zero
                yield event

    async def _pull_events(self, name: str) -> AsyncIterator[JSON]:
        yield {"status": "pulling manifest"}
        found = self.registry.get(_key(name))
        if found is None:
            raise SimError(500, "pull model manifest: file does not exist")
        async for event in self._steps("pulling", found):
            yield event
        for digest, _ in found.layers():
            self.blobs.setdefault(digest, None)
        yield {"status": "verifying sha256 digest"}
        yield {"status": "writing manifest"}
        self.models[_key(name)] = dataclasses.replace(found, name=name, modified_at_ns=time.time_ns())
        yield {"status": "success"}

    async def _push(self, request: web.Request) -> web.StreamResponse:
        body = await self._read_json(request, "PushRequest")
        name = self._name_field(body, "PushRequest")
        if not _valid_name(name):
            raise SimError(400, "invalid model name")
        return await self._progress(request, _stream_flag(body, "PushRequest"), self._push_events(name))

    async def _push_events(self, name: str) -> AsyncIterator[JSON]:
        yield {"status": "retrieving manifest"}
        spec = self.models.get(_key(name))
        if spec is None:
            yield {"status": "couldn't retrieve manifest"}
            path = normalize_name(name).replace(":", "/")
            path = path if path.count("/") >= 2 else f"library/{path}"
            raise SimError(500, f"open {MODELS_DIR}/manifests/registry.ollama.ai/{path}: no such file or directory")
        async for event in self._steps("pushing", spec):
            yield event
        yield {"status": "pushing manifest"}
        self.registry[_key(name)] = dataclasses.replace(spec)
        yield {"status": "success"}

    async def _create(self, request: web.Request) -> web.StreamResponse:
        body = await self._read_json(request, "CreateRequest")
        return await self._progress(request, _stream_flag(body, "CreateRequest"), self._create_events(body))

    async def _create_events(self, body: JSON) -> AsyncIterator[JSON]:
        w = "CreateRequest"
        name = self._name_field(body, w)
        files: JSON = _field(body, "files", dict, w, "map[string]string") or {}
        adapters: JSON = _field(body, "adapters", dict, w, "map[string]string") or {}
        for path, digest in {**files, **adapters}.items():
            key = _blob_key(str(digest))
            if key is None:
                raise SimError(400, f"invalid digest for {path}: invalid digest format")
            if key not in self.blobs:
                raise SimError(
                    400,
                    f"blob not found for {path} (digest {digest}): "
                    f"open {MODELS_DIR}/blobs/{key.replace(':', '-')}: no such file or directory",
                )
        if not _valid_name(name):
            raise SimError(400, "invalid model name")
        source = _field(body, "from", str, w, "string")
        if source:
            base = self.models.get(_key(source))
            if base is None:  # Ollama pulls a missing FROM model
                async for event in self._pull_events(source):
                    if event["status"] != "success":
                        yield event
                base = self.models[_key(source)]
            for digest, _ in base.layers():
                yield {"status": f"using existing layer {digest}"}
            spec = dataclasses.replace(base, name=name)
        elif files:
            size = 0
            for path, digest in sorted(files.items()):
                yield {"status": "parsing GGUF"}
                content = self.blobs[str(_blob_key(digest))]
                if path.endswith(".gguf") and content is not None and content[:4] not in (b"GGUF", b"FUGG"):
                    raise SimError(400, "supplied file was not in GGUF format")
                size += len(content or b"")
                yield {"status": f"using existing layer {_blob_key(digest)}"}
            spec = ModelSpec(name, size=size or 0)
        else:
            raise SimError(400, "neither 'from' or 'files' was specified")
        quantize = _field(body, "quantize", str, w, "string")
        if quantize:
            yield {"status": f"quantizing {spec.quantization_level} model to {quantize.upper()}"}
            spec.quantization_level = quantize.upper()
        license_ = body.get("license")
        changes: JSON = {
            "template": _field(body, "template", str, w, "string"),
            "system": _field(body, "system", str, w, "string"),
            "license": "\n".join(license_) if isinstance(license_, list) else license_,
            "parameters": _field(body, "parameters", dict, w, "map[string]interface {}"),
        }
        for key, value in changes.items():
            if value:
                yield {"status": f"creating new layer {_blob_of(json.dumps(value))[0]}"}
                setattr(spec, key, {**spec.parameters, **value} if key == "parameters" else value)
        if body.get("messages"):
            yield {"status": f"creating new layer {_blob_of(json.dumps(body['messages']))[0]}"}
        spec.digest = _sha256(json.dumps([name, spec.layers()]).encode())
        spec.modified_at_ns = time.time_ns()
        yield {"status": "writing manifest"}
        self.models[_key(name)] = spec
        yield {"status": "success"}

    async def _head_blob(self, request: web.Request) -> web.StreamResponse:
        key = _blob_key(request.match_info["digest"])
        if key is None:
            return _json({"error": "invalid digest format"}, 400)
        if key not in self.blobs:
            return _json({"error": f'blob "{request.match_info["digest"]}" not found'}, 404)
        return web.Response(status=200)

    async def _post_blob(self, request: web.Request) -> web.StreamResponse:
        digest = request.match_info["digest"]
        key = _blob_key(digest)
        if key is None:
            return _json({"error": "invalid digest format"}, 400)
        if key in self.blobs:
            return web.Response(status=200)  # already there: Ollama does not read the body
        data = await request.read()
        got = "sha256:" + _sha256(data)
        if got != key:
            return _json({"error": f'digest mismatch, expected "{digest}", got "{got}"'}, 400)
        self.blobs[key] = data
        return web.Response(status=201)

    async def _copy(self, request: web.Request) -> web.StreamResponse:
        w = "CopyRequest"
        body = await self._read_json(request, w)
        source = _field(body, "source", str, w, "string") or ""
        destination = _field(body, "destination", str, w, "string") or ""
        if not _valid_name(source):
            raise SimError(400, f'source "{source}" is invalid')
        if not _valid_name(destination):
            raise SimError(400, f'destination "{destination}" is invalid')
        spec = self.models.get(_key(source))
        if spec is None:
            raise SimError(404, f'model "{source}" not found')
        self.models[_key(destination)] = dataclasses.replace(spec, name=destination, modified_at_ns=time.time_ns())
        return web.Response(status=200)

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        body = await self._read_json(request, "DeleteRequest")
        name = self._name_field(body, "DeleteRequest")
        if not _valid_name(name):
            raise SimError(400, f'name "{name}" is invalid')
        spec = self.models.pop(_key(name), None)
        if spec is None:
            raise SimError(404, f"model '{name}' not found")
        self._unload(spec)
        return web.Response(status=200)
