"""Model names as Ollama reads them: defaults filled in, matched case-insensitively."""

from __future__ import annotations

import re

_NAME_RE = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/){0,2}[A-Za-z0-9][\w.-]{0,79}(?::\w[\w.-]{0,79})?$")


def normalize_name(name: str) -> str:
    """`llama3` -> `llama3:latest`; the default registry and `library/` are implied, as in Ollama."""
    n = name.strip()
    for prefix in ("registry.ollama.ai/library/", "registry.ollama.ai/", "library/"):
        if n.lower().startswith(prefix):
            n = n[len(prefix) :]
            break
    if ":" not in n.rsplit("/", 1)[-1]:
        n += ":latest"
    return n


def _key(name: str) -> str:
    # Ollama matches names case-insensitively but shows them as written.
    return normalize_name(name).lower()


def _valid_name(name: str) -> bool:
    return bool(name) and _NAME_RE.match(name.strip()) is not None
