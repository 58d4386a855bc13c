"""Resolve `--model` to a GGUF file: a path, or an Ollama model name via Ollama's manifests.

Ollama keeps `<models>/manifests/<registry>/<namespace>/<model>/<tag>` (JSON,
an OCI-style manifest) and the layers under `<models>/blobs/sha256-<hex>`; the
layer with media type `application/vnd.ollama.image.model` is the GGUF.
`<models>` is `$OLLAMA_MODELS`, else `~/.ollama/models` (and the Linux
service's `/usr/share/ollama/.ollama/models`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["ModelSourceError", "ollama_models_dirs", "resolve_model", "resolve_ollama_name"]

MODEL_MEDIA_TYPE = "application/vnd.ollama.image.model"
DEFAULT_REGISTRY = "registry.ollama.ai"


class ModelSourceError(FileNotFoundError):
    pass


def ollama_models_dirs(explicit: str | os.PathLike[str] | None = None) -> list[Path]:
    if explicit:
        return [Path(explicit).expanduser()]
    if os.environ.get("OLLAMA_MODELS"):
        return [Path(os.environ["OLLAMA_MODELS"]).expanduser()]
    return [Path.home() / ".ollama" / "models", Path("/usr/share/ollama/.ollama/models")]


def _manifest_path(models: Path, name: str) -> Path:
    """`llama3` -> registry.ollama.ai/library/llama3/latest; `host/ns/m:tag` keeps its parts."""
    base, _, tag = name.partition(":")
    parts = base.split("/")
    if len(parts) == 1:
        parts = [DEFAULT_REGISTRY, "library", *parts]
    elif len(parts) == 2:
        parts = [DEFAULT_REGISTRY, *parts]
    return models.joinpath("manifests", *parts, tag or "latest")


def resolve_model(model: str, models_dir: str | os.PathLike[str] | None = None) -> Path:
    """The GGUF behind `model` (an existing file, else an Ollama name)."""
    path = Path(model).expanduser()
    if path.is_file():
        return path
    if path.suffix == ".gguf" or model.startswith((".", "/", "~")):
        raise ModelSourceError(f"model file not found: {model}")
    return resolve_ollama_name(model, models_dir)


def resolve_ollama_name(model: str, models_dir: str | os.PathLike[str] | None = None) -> Path:
    """The GGUF of the Ollama model `model`, never a path: what a name from a network request may reach."""
    if not model or model.startswith(("/", "~", "\\")) or ".." in model.replace(":", "/").split("/"):
        raise ModelSourceError(f"{model!r} is not an Ollama model name")
    searched = []
    for models in ollama_models_dirs(models_dir):
        manifest = _manifest_path(models, model)
        searched.append(str(manifest))
        if not manifest.is_file():
            continue
        try:
            layers = json.loads(manifest.read_text()).get("layers", [])
        except ValueError as exc:
            raise ModelSourceError(f"{manifest}: not a valid manifest: {exc}") from exc
        for layer in layers:
            if layer.get("mediaType") == MODEL_MEDIA_TYPE:
                blob = models / "blobs" / str(layer.get("digest", "")).replace(":", "-")
                if blob.is_file():
                    return blob
                raise ModelSourceError(f"{model}: manifest names {blob}, which is missing (re-pull the model)")
        raise ModelSourceError(f"{model}: manifest {manifest} has no model layer")
    raise ModelSourceError(f"model {model!r} is neither a file nor an Ollama model (looked for {', '.join(searched)})")
