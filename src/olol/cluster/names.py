"""Model names as Ollama compares them.

Ollama treats `llama3`, `llama3:latest` and `registry.ollama.ai/library/llama3:latest`
as one model (and ignores case); every lookup in the cluster goes through `normalize` so a request
for any spelling finds every host that has it.
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ["normalize", "same_model"]

_DEFAULT_PREFIXES = ("registry.ollama.ai/library/", "library/")


# Routing asks about a dozen times per request for the same few names (eligibility, leases, stats,
# metrics); the set of distinct spellings a proxy sees is small, so a bounded cache is nearly all hits.
@lru_cache(maxsize=4096)
def normalize(name: str) -> str:
    """The canonical spelling: default registry and namespace dropped, tag defaulted to `latest`.

    Lower-cased, because Ollama matches names case-insensitively.
    """
    n = name.strip().lower()
    for prefix in _DEFAULT_PREFIXES:
        if n.startswith(prefix):
            n = n[len(prefix):]
            break
    # A ':' before the last '/' belongs to a registry port, not a tag.
    if ":" not in n.rsplit("/", 1)[-1]:
        n += ":latest"
    return n


def same_model(a: str, b: str) -> bool:
    return normalize(a) == normalize(b)
