"""Real Ollama models directories on disk, laid out the way Ollama writes them.

The simulator keeps models in memory; a source agent reads files. These
helpers write `manifests/registry.ollama.ai/<namespace>/<model>/<tag>` and
`blobs/sha256-<hex>` with real content, so what a copy moves can be checked
byte for byte. The registry stand-in and the disk-backed simulator use the
same layout.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["LaidOutModel", "gguf_bytes", "manifest_path", "put_blob", "write_manifest", "write_ollama_model"]

CONFIG = "application/vnd.docker.container.image.v1+json"
MODEL = "application/vnd.ollama.image.model"
TEXT_LAYERS = {
    "template": "application/vnd.ollama.image.template",
    "system": "application/vnd.ollama.image.system",
    "license": "application/vnd.ollama.image.license",
}
PARAMS = "application/vnd.ollama.image.params"


def gguf_bytes(size: int, seed: int = 0) -> bytes:
    """`size` bytes that start like a GGUF file (what the simulator's /api/create checks), cheap to make."""
    head = b"GGUF" + seed.to_bytes(4, "little")
    block = hashlib.sha256(head).digest() * 2048  # 64 KiB of seed-dependent bytes
    body = (block * (size // len(block) + 1))[: max(0, size - len(head))]
    return (head + body)[:size]


def put_blob(root: Path, data: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = root / "blobs" / digest.replace(":", "-")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return digest, len(data)


def manifest_path(root: Path, name: str) -> Path:
    model, _, tag = name.partition(":")
    namespace, _, model = model.rpartition("/")
    return root / "manifests" / "registry.ollama.ai" / (namespace or "library") / model / (tag or "latest")


def write_manifest(root: Path, name: str, layers: Iterable[dict[str, Any]]) -> Path:
    config_digest, config_size = put_blob(root, json.dumps({"model_format": "gguf"}).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": CONFIG, "digest": config_digest, "size": config_size},
        "layers": list(layers),
    }
    path = manifest_path(root, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest))
    return path


def text_layers(
    root: Path,
    *,
    template: str = "",
    system: str = "",
    license_text: str = "",
    parameters: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    layers = []
    for key, text in (("template", template), ("system", system), ("license", license_text)):
        if text:
            digest, size = put_blob(root, text.encode())
            layers.append({"mediaType": TEXT_LAYERS[key], "digest": digest, "size": size})
    if parameters:
        digest, size = put_blob(root, json.dumps(parameters).encode())
        layers.append({"mediaType": PARAMS, "digest": digest, "size": size})
    return layers


@dataclass
class LaidOutModel:
    name: str
    weights_digest: str
    weights: bytes
    template: str
    system: str
    parameters: dict[str, Any]
    manifest_path: Path
    layers: list[dict[str, Any]] = field(default_factory=list)


def write_ollama_model(
    root: Path,
    name: str,
    weights: bytes,
    *,
    template: str = "{{ .Prompt }}",
    system: str = "You are terse.",
    parameters: dict[str, Any] | None = None,
    license_text: str = "MIT",
) -> LaidOutModel:
    parameters = {"stop": ["<|eot|>"], "temperature": 0.2} if parameters is None else parameters
    digest, size = put_blob(root, weights)
    layers = [
        {"mediaType": MODEL, "digest": digest, "size": size},
        *text_layers(root, template=template, system=system, license_text=license_text, parameters=parameters),
    ]
    path = write_manifest(root, name, layers)
    full = name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"
    return LaidOutModel(full, digest, weights, template, system, parameters, path, layers)
