"""The one name for an Ollama-shaped JSON object, shared by the domain, the wire and the modes."""

from __future__ import annotations

from typing import Any

__all__ = ["JSON"]

#: A decoded JSON object as Ollama's API sends it (request bodies, reply chunks).
JSON = dict[str, Any]
