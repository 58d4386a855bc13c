"""Model names as Ollama compares them: the one normaliser, for routing and for the quant parser.

Ollama treats `llama3`, `llama3:latest` and `registry.ollama.ai/library/llama3:latest`
as one model (and ignores case); every lookup in the cluster goes through `normalize` so a request
for any spelling finds every host that has it. It lives here, under the hot paths, because the
quant parser (`olol._fast.quant`) must compare names the same way and may import nothing above
`_fast`; `olol.cluster` re-exports it.
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ["DEFAULT_PREFIXES", "drop_default_prefix", "normalize"]

#: The default registry and namespace, which a name may carry or leave out.
DEFAULT_PREFIXES = ("registry.ollama.ai/library/", "library/")


def drop_default_prefix(name: str) -> str:
    """`name` (already lower-cased) without the default registry and namespace."""
    for prefix in DEFAULT_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


# Routing asks about a dozen times per request for the same few names (eligibility, leases, stats,
# metrics); the set of distinct spellings a proxy sees is small, so a bounded cache is nearly all hits.
@lru_cache(maxsize=4096)
def normalize(name: str) -> str:
    """The canonical spelling: default registry and namespace dropped, tag defaulted to `latest`.

    Lower-cased, because Ollama matches names case-insensitively.
    """
    n = drop_default_prefix(name.strip().lower())
    # A ':' before the last '/' belongs to a registry port, not a tag.
    if ":" not in n.rsplit("/", 1)[-1]:
        n += ":latest"
    return n
