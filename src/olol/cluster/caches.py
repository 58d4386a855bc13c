"""What each host's KV cache holds, and how much of what it was sent it actually reused.

Two views of one thing. The prefix indexes (one per model, `olol._fast.prefix`)
are the proxy's own model of each host's prompt cache: the text it routed there,
evicted least-recently-sent first within a budget that follows the host's KV
cache (context x parallel slots), and to as many prompts as the host showed it
keeps: an engine without a host-memory prompt cache (Ollama; llama-server with
`--cache-ram 0`) holds one prompt a slot, however short, and a prompt routed to
a host for its cache that comes back uncached says so. The counters are the hosts' own word: the
prompt tokens they were sent and how many of them they served from cache
(`prompt_eval_cached_count`, which Ollama reports and OLOL's llama.cpp backend
fills from llama-server's `timings.cache_n`), plus the speed at which they
evaluate the rest, which prices a cache hit in seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from olol._fast.prefix import PrefixIndex
from olol.cluster.host import Host
from olol.cluster.names import normalize
from olol.cluster.stats import Ewma

__all__ = ["CHARS_PER_TOKEN", "CacheBook", "HostCacheStats", "Running"]

# Prompt bytes a token stands for, roughly (English text with common tokenizers): turns the
# index's bytes into tokens and a host's token budget into bytes.
CHARS_PER_TOKEN = 4.0
# Context per slot assumed for a host that has not said (an Ollama host reports none in /api/ps).
DEFAULT_CONTEXT = 4096
# Ollama's field for prompt tokens read from the KV cache (api/types.go `PromptEvalCachedCount`).
CACHED_FIELD = "prompt_eval_cached_count"
# A prompt routed for its cache that reused less than this share of the expected prefix was a miss.
MISS_SHARE = 0.5


@dataclass
class HostCacheStats:
    prompt_tokens: int = 0  # prompt tokens of requests that reported their cache use
    cached_tokens: int = 0  # of those, served from the host's KV cache
    prompt_rate: Ewma = field(default_factory=Ewma)  # evaluated prompt tokens/s

    @property
    def hit_rate(self) -> float | None:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else None


class Running(NamedTuple):
    """A request in flight on a host: its routing text, when it is expected to be done (monotonic s),
    and whether its prompt is evaluated (its first token came)."""

    text: bytes
    done_at: float
    answering: bool = False


def common_prefix(a: bytes, b: bytes) -> int:
    """Length of the longest common prefix of `a` and `b` (a binary search of C-speed slice compares)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        mid = (low + high + 1) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid - 1
    return low


class CacheBook:
    def __init__(self) -> None:
        self._indexes: dict[str, PrefixIndex] = {}  # normalised model -> index of its hosts
        self._stats: dict[str, HostCacheStats] = {}
        self._caps: dict[str, int] = {}  # host id -> prompts it showed it keeps (absent: its budget alone bounds)
        self._running: dict[str, list[Running]] = {}  # host id -> its requests in flight

    # ------------------------------------------------------------------ the proxy's model of the caches
    @staticmethod
    def budget(host: Host, model: str) -> int:
        """Bytes of prompt text `host` can keep cached for `model`: its context x slots, in bytes."""
        entry = host.running.get(normalize(model)) or {}
        context = entry.get("context_length")
        tokens = (context if isinstance(context, int) and context > 0 else DEFAULT_CONTEXT) * max(1, host.parallel)
        return int(tokens * CHARS_PER_TOKEN)

    def match(self, model: str, text: bytes) -> dict[str, int]:
        """Bytes of the longest prefix of `text` each host holds for `model` (hosts holding none are absent)."""
        index = self._indexes.get(normalize(model))
        return index.match(text) if index is not None else {}

    def record(self, host: Host, model: str, text: bytes) -> None:
        """`text` was just sent to `host` for `model`: its engine now caches it."""
        name = normalize(model)
        index = self._indexes.get(name)
        if index is None:
            index = self._indexes[name] = PrefixIndex()
        try:
            index.set_host(host.id, self.budget(host, name))
        except ValueError:  # more than MAX_HOSTS serve this model: the rest are routed on load alone
            return
        index.insert(host.id, text)
        cap = self._caps.get(host.id)
        if cap is not None and index.entries(host.id) > cap:
            budget = index.budget(host.id)
            while index.entries(host.id) > cap:  # a smaller budget evicts the least recently sent first
                index.set_host(host.id, index.used(host.id) - 1)
            index.set_host(host.id, budget)

    def answered(self, host: Host, model: str, text: bytes, expected: int, final: dict[str, Any]) -> None:
        """`host` answered a prompt whose routing text is `text`, sent there for `expected` cached bytes
        (0: not for its cache): learn from the reply, then index the text as the host's cache.

        A miss means the host keeps fewer prompts than the index believed: it is held to one fewer than it
        had. A hit at that bound raises it by one, so the bound follows the host back up.
        """
        self.observe(host.id, final)
        cached = final.get(CACHED_FIELD)
        index = self._indexes.get(normalize(model))
        if expected > 0 and isinstance(cached, int) and index is not None:
            held = index.entries(host.id)
            cap = self._caps.get(host.id)
            if cached * CHARS_PER_TOKEN < MISS_SHARE * expected:
                self._caps[host.id] = max(1, held - 1)
            elif cap is not None and held >= cap:
                self._caps[host.id] = cap + 1
        self.record(host, model, text)

    def begin(self, host_id: str, text: bytes, expected_s: float = 0.0) -> None:
        """A request with routing text `text` started on `host_id`, expected to take `expected_s` seconds."""
        self._running.setdefault(host_id, []).append(Running(text, time.monotonic() + expected_s))

    def first_token(self, host_id: str, text: bytes, generation_s: float) -> None:
        """The request with routing text `text` on `host_id` has its prompt evaluated; its answer should
        take `generation_s` more."""
        running = self._running.get(host_id, [])
        for i, entry in enumerate(running):
            if entry.text == text and not entry.answering:
                running[i] = Running(text, time.monotonic() + generation_s, answering=True)
                return

    def end(self, host_id: str, text: bytes) -> None:
        running = self._running.get(host_id, [])
        for i, entry in enumerate(running):
            if entry.text == text:
                del running[i]
                break
        if not running:
            self._running.pop(host_id, None)

    @property
    def running(self) -> bool:
        """Whether any request with a routing text is in flight anywhere."""
        return bool(self._running)

    def in_flight(self, host_id: str, text: bytes) -> tuple[int, float] | None:
        """The longest prefix of `text` a request in flight on `host_id` shares with it, and the seconds
        until the first request sharing that much is expected to be done; None if none runs.

        One still evaluating its prompt past its time is taken to be nearly done: the prompt is slower
        than priced, and evaluating it again elsewhere would be no quicker (a host that stopped answering
        is ended by the stall timeout). One answering past its time is expected to take as long again
        as it is late (an answer longer than most is no sign of an end near), so nobody waits on it for ever.

        Not yet in the index (a prompt is indexed once answered), but in the host's cache once it is done:
        the slot that evaluates it keeps it for the next request with that prefix.
        """
        best: tuple[int, float] | None = None
        now = time.monotonic()
        for entry in self._running.get(host_id, ()):
            length = common_prefix(text, entry.text)
            remaining = abs(entry.done_at - now) if entry.answering else max(0.0, entry.done_at - now)
            if best is None or length > best[0] or (length == best[0] and remaining < best[1]):
                best = (length, remaining)
        return best

    def busy(self, host_id: str, text: bytes, length: int) -> bool:
        """Whether a request in flight on `host_id` holds the first `length` bytes of `text` in its slot.

        An engine's slots share no prompt: while that request runs, another one with the same prefix
        gets another slot on that host and evaluates the prefix again.
        """
        head = text[:length]
        return any(other.text.startswith(head) for other in self._running.get(host_id, ()))

    def cap(self, host_id: str) -> int | None:
        """Prompts `host_id` showed it keeps at most, or None while no miss said so."""
        return self._caps.get(host_id)

    def room(self, host: Host, model: str) -> int:
        """Bytes of `host`'s cache for `model` not yet holding any indexed prefix."""
        index = self._indexes.get(normalize(model))
        used = index.used(host.id) if index is not None else 0
        return self.budget(host, model) - used

    def forget(self, host_id: str) -> None:
        """The host went down: whatever it had cached is gone (a restarted engine starts empty)."""
        for index in self._indexes.values():
            index.remove_host(host_id)

    # ------------------------------------------------------------------ the hosts' own word
    def observe(self, host_id: str, final: dict[str, Any]) -> None:
        """Learn from a reply's final stats: cache use (when reported) and prompt evaluation speed."""
        prompt = final.get("prompt_eval_count")
        cached = final.get(CACHED_FIELD)
        duration = final.get("prompt_eval_duration")
        if not isinstance(prompt, int) or prompt <= 0:
            return
        stats = self._stats.setdefault(host_id, HostCacheStats())
        evaluated = prompt
        if isinstance(cached, int) and 0 <= cached <= prompt:
            stats.prompt_tokens += prompt
            stats.cached_tokens += cached
            evaluated = prompt - cached
        if isinstance(duration, (int, float)) and duration > 0 and evaluated > 0:
            stats.prompt_rate.update(evaluated / (duration / 1e9))

    def prompt_rate(self, host_id: str) -> float | None:
        """Prompt tokens/s `host_id` evaluates, else the mean of measured hosts, else None."""
        own = self._stats.get(host_id)
        if own is not None and own.prompt_rate.value is not None:
            return own.prompt_rate.value
        rates = [s.prompt_rate.value for s in self._stats.values() if s.prompt_rate.value is not None]
        return sum(rates) / len(rates) if rates else None

    def get(self, host_id: str) -> HostCacheStats | None:
        return self._stats.get(host_id)

    def indexed(self, host_id: str) -> tuple[int, int]:
        """(bytes, prompts) the proxy believes `host_id` holds, over all models."""
        used = sum(index.used(host_id) for index in self._indexes.values())
        entries = sum(index.entries(host_id) for index in self._indexes.values())
        return used, entries

    def to_json(self, host_id: str) -> dict[str, Any]:
        stats = self._stats.get(host_id) or HostCacheStats()
        used, entries = self.indexed(host_id)
        return {
            "prompt_tokens": stats.prompt_tokens,
            "cached_tokens": stats.cached_tokens,
            "hit_rate": stats.hit_rate,
            "prompt_tokens_per_s": stats.prompt_rate.value,
            "index_bytes": used,
            "index_prompts": entries,
            "prompt_cap": self._caps.get(host_id),
        }
