"""Locating (and, in a source checkout, building) the llama.cpp binaries OLOL drives."""

from olol.backends.llamacpp.bins import (
    PINNED_VERSION,
    LlamaBinaryNotFound,
    build_script,
    ensure_built,
    find_llama_server,
    find_rpc_server,
    llama_cache_root,
)

__all__ = [
    "PINNED_VERSION",
    "LlamaBinaryNotFound",
    "build_script",
    "ensure_built",
    "find_llama_server",
    "find_rpc_server",
    "llama_cache_root",
]
