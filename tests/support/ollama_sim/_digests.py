"""Content digests of blobs and layers, spelled as Ollama spells them."""

from __future__ import annotations

import hashlib
import re


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _blob_of(text: str) -> tuple[str, int]:
    data = text.encode()
    return "sha256:" + _sha256(data), len(data)


def _blob_key(digest: str) -> str | None:
    """Ollama accepts `sha256:<hex>` and `sha256-<hex>` (its on-disk spelling)."""
    m = re.fullmatch(r"sha256[:-]([0-9a-fA-F]{64})", digest)
    return "sha256:" + m.group(1).lower() if m else None
