"""What a model is made of, as far as copying it between hosts goes.

A copy moves only the weight files (model, projector, adapters); the small
layers Ollama keeps beside them (template, system prompt, parameters, license,
messages) travel inline in the manifest and are handed to `/api/create` on the
receiving side, which rebuilds the model exactly as it was configured.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from olol.cluster.backend import JSON
from olol.errors import BadRequest, OlolError
from olol.proto import models_pb as pb

__all__ = [
    "ADAPTER",
    "MODEL",
    "PROJECTOR",
    "WEIGHTS",
    "Layer",
    "ModelManifest",
    "blob_file_name",
    "digest_hex",
    "gguf_file_name",
    "ollama_manifest",
    "text_digests",
]


MODEL = "application/vnd.ollama.image.model"
PROJECTOR = "application/vnd.ollama.image.projector"
ADAPTER = "application/vnd.ollama.image.adapter"
TEMPLATE = "application/vnd.ollama.image.template"
SYSTEM = "application/vnd.ollama.image.system"
PARAMS = "application/vnd.ollama.image.params"
LICENSE = "application/vnd.ollama.image.license"
MESSAGES = "application/vnd.ollama.image.messages"
#: Layers that are files worth copying; everything else is a few bytes of text.
WEIGHTS = (MODEL, PROJECTOR, ADAPTER)
_TEXT_LAYERS = {TEMPLATE: "template", SYSTEM: "system", LICENSE: "license"}

_HEX = re.compile(r"[0-9a-f]{64}")


def digest_hex(digest: str) -> str:
    """The 64 hex digits of `sha256:<hex>` or `sha256-<hex>` (Ollama's on-disk spelling).

    Raises BadRequest otherwise: a digest names a file, so nothing else may pass.
    """
    hexpart = digest.strip().lower().removeprefix("sha256:").removeprefix("sha256-")
    if not _HEX.fullmatch(hexpart):
        raise BadRequest(f"invalid digest format: {digest!r}")
    return hexpart


def blob_file_name(digest: str) -> str:
    return "sha256-" + digest_hex(digest)


def gguf_file_name(model: str) -> str:
    """A file name for `model` in a llama.cpp model directory.

    `tiny:latest` -> `tiny.gguf`, so the llama.cpp backend (which names a model
    after its file's stem) serves it under the same name.
    """
    name, _, tag = model.rpartition(":") if ":" in model.rsplit("/", 1)[-1] else (model, "", "latest")
    stem = name if tag in ("", "latest") else f"{name}-{tag}"
    return re.sub(r"[^\w.-]", "_", stem) + ".gguf"


@dataclass(frozen=True)
class Layer:
    digest: str  # "sha256:<hex>"
    size: int
    media_type: str = MODEL
    file_name: str = ""  # a GGUF store's file name; empty for Ollama layers


@dataclass
class ModelManifest:
    name: str
    format: str  # "ollama" | "gguf"
    layers: list[Layer]
    template: str = ""
    system: str = ""
    license: str = ""
    parameters: JSON = field(default_factory=dict)
    messages: list[Any] = field(default_factory=list)
    digest: str = ""

    @property
    def total_size(self) -> int:
        return sum(layer.size for layer in self.layers)

    @property
    def model_layer(self) -> Layer:
        for layer in self.layers:
            if layer.media_type == MODEL:
                return layer
        raise BadRequest(f"model {self.name} has no weights layer")

    def to_pb(self) -> pb.ModelManifest:
        return pb.ModelManifest(
            name=self.name,
            format=self.format,
            layers=[
                pb.Layer(digest=la.digest, size=la.size, media_type=la.media_type, file_name=la.file_name)
                for la in self.layers
            ],
            template=self.template,
            system=self.system,
            license=self.license,
            parameters_json=json.dumps(self.parameters) if self.parameters else "",
            messages_json=json.dumps(self.messages) if self.messages else "",
            total_size=self.total_size,
            digest=self.digest,
        )

    @classmethod
    def from_pb(cls, msg: pb.ModelManifest) -> ModelManifest:
        layers = [Layer(la.digest, la.size, la.media_type or MODEL, la.file_name) for la in msg.layers]
        for layer in layers:
            digest_hex(layer.digest)  # a peer's manifest names files: refuse anything but a digest
        return cls(
            name=msg.name,
            format=msg.format or "ollama",
            layers=layers,
            template=msg.template,
            system=msg.system,
            license=msg.license,
            parameters=json.loads(msg.parameters_json) if msg.parameters_json else {},
            messages=json.loads(msg.messages_json) if msg.messages_json else [],
            digest=msg.digest,
        )

    def create_request(self, name: str) -> JSON:
        """The `/api/create` body that rebuilds this model from its (already uploaded) weight blobs."""
        files: dict[str, str] = {}
        adapters: dict[str, str] = {}
        for i, layer in enumerate(self.layers):
            # Ollama tells model from projector by reading each GGUF, so only the extension matters.
            if layer.media_type == ADAPTER:
                adapters[f"adapter-{i}.gguf"] = layer.digest
            else:
                files[layer.file_name or ("model.gguf" if layer.media_type == MODEL else f"projector-{i}.gguf")] = (
                    layer.digest
                )
        body: JSON = {"model": name, "files": files}
        if adapters:
            body["adapters"] = adapters
        for key in ("template", "system", "license"):
            if value := getattr(self, key):
                body[key] = value
        if self.parameters:
            body["parameters"] = self.parameters
        if self.messages:
            body["messages"] = self.messages
        return body


def text_digests(doc: JSON) -> list[str]:
    """The digests of an Ollama manifest's small layers (template, system, parameters, ...), read inline."""
    return [
        str(e.get("digest", ""))
        for e in doc.get("layers") or []
        if str(e.get("mediaType", "")) in _TEXT_LAYERS or e.get("mediaType") in (PARAMS, MESSAGES)
    ]


def ollama_manifest(doc: JSON, name: str, digest: str, text_of: Callable[[str], str]) -> ModelManifest:
    """A model from an Ollama manifest document (a models directory's or a registry's).

    `text_of(digest)` gives a small layer's text ("" if unreadable); weight
    layers stay references to be copied.
    """
    out = ModelManifest(name=name, format="ollama", layers=[], digest=digest)
    for entry in doc.get("layers") or []:
        media, layer_digest = str(entry.get("mediaType", "")), str(entry.get("digest", ""))
        if media in WEIGHTS:
            digest_hex(layer_digest)  # it will name a file
            out.layers.append(Layer(layer_digest, int(entry.get("size") or 0), media))
        elif media in _TEXT_LAYERS:
            setattr(out, _TEXT_LAYERS[media], text_of(layer_digest))
        elif media in (PARAMS, MESSAGES):
            try:
                value = json.loads(text_of(layer_digest) or "null")
            except ValueError:
                value = None
            if media == PARAMS and isinstance(value, dict):
                out.parameters = value
            elif media == MESSAGES and isinstance(value, list):
                out.messages = value
    if not any(la.media_type == MODEL for la in out.layers):
        raise OlolError(f"manifest of {name} lists no model weights", status=422)
    return out
