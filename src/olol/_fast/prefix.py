"""Prefix index: which hosts hold which prompt prefixes, for cache-aware routing.

Facade over the compiled `prefix_c` or the pure-Python twin `_prefix_py`
(picked by `olol._fast.load`); see `_prefix_py` for the design.

    index = PrefixIndex()
    index.set_host("a", budget=1 << 20)    # bytes of prompt text the host's KV cache holds
    index.insert("a", prompt.encode())
    index.match(next_prompt.encode())      # {"a": 1984}: bytes of the longest prefix "a" holds
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from olol._fast import load

__all__ = ["BLOCK", "IMPLEMENTATION", "MAX_HOSTS", "PrefixIndex", "block_hashes"]

if TYPE_CHECKING:
    from olol._fast._prefix_py import BLOCK, MAX_HOSTS, PrefixIndex, block_hashes
else:
    _impl = load("prefix")
    BLOCK, MAX_HOSTS, PrefixIndex, block_hashes = _impl.BLOCK, _impl.MAX_HOSTS, _impl.PrefixIndex, _impl.block_hashes

# Module name of the implementation in use ("olol._fast.prefix_c" or "olol._fast._prefix_py").
IMPLEMENTATION: str = load("prefix").__name__
