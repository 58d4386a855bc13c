"""Default directories of model transfer (no grpc here: a proxy over plain Ollama hosts imports this)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_ollama_models", "default_transfer_dir"]


def default_ollama_models() -> Path:
    """Where a local Ollama keeps its models: $OLLAMA_MODELS, else ~/.ollama/models."""
    env = os.environ.get("OLLAMA_MODELS")
    return Path(env).expanduser() if env else Path.home() / ".ollama" / "models"


def default_transfer_dir() -> Path:
    """Where partial copies wait to be resumed: $XDG_CACHE_HOME/olol/transfer, else ~/.cache/olol/transfer."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "olol" / "transfer"
