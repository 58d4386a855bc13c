"""Cache-aware routing: send a prompt where its longest prefix is already in a KV cache.

Time to first token is mostly prompt evaluation, and Ollama and llama.cpp both
skip the part of a prompt whose KV cache they still hold. So, among the hosts
within the load bound (the bounded-load rule of session affinity: at most
`load_factor` x the mean load, counting this request, plus `BOUND_SLACK`), the cost of a host is its
expected service time with the prompt evaluation its cache saves taken off: the
prompt it lacks over its measured prompt tokens/s, plus the expected output over
its tokens/s, scaled by its queue, plus the adaptive policy's cold-load and
fallback penalties. With equal loads the longest match wins; a fast host with a
cold cache can still beat a slow host with a warm one; a warm host past the
bound loses its turn to the others' costs. A warm host with every slot busy
may still take a prompt within the bound (it waits there for a slot, and its
cost counts that queue) as long as some host is free; when none is, the request
waits in the proxy's queue as under every policy.

A prompt no host holds (less than `min_match` bytes anywhere) goes, among the
least loaded hosts, to the one with the most room left in its cache (SGLang's
rule), so that together the hosts hold more prefixes than any one could.

A host running a request with the same prefix does not count as holding it:
an engine's slots share no prompt, so a second request sent there now would
evaluate it again in another slot. It is worth waiting for instead
(`patience`): once that request is done its slot holds the prefix, and the next
one with it starts warm there, which on a host that evaluates prompts slower
than it can wait for one reply is far sooner than evaluating the prefix again
elsewhere. So concurrent questions under one long system prompt queue in the
proxy for the host evaluating it (the first of them while it is still cold),
and go elsewhere only when the wait would cost more than a cold start there
(the queue for the prefix grew long, or another host is much faster).

Conversation affinity is a special case: a chat's next turn extends the text the
previous turn was routed with, so it matches the host that served it. An explicit
`X-OLOL-Session` header still pins, in the router, before this policy is asked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from olol.cluster import CacheBook, LatencyBook, normalize
from olol.cluster.caches import CHARS_PER_TOKEN
from olol.cluster.routing import Candidate
from olol.proxy.affinity.ring import load_bound
from olol.proxy.policies.adaptive import COLD_LOAD_PENALTY, FALLBACK_PENALTY, Adaptive

__all__ = ["CacheAware"]

# Requests a host may hold past the bounded-load rule's bound. With a few requests in flight, 1.25x the
# mean rounds to turning away a second request at the host holding its prefix (loads 2 and 0: a bound
# of 2), for a cold start elsewhere that costs many times the wait there; the costs weigh that wait.
BOUND_SLACK = 1
# Below this a "match" is a shared template header or greeting, not a prompt worth following.
MIN_MATCH = 256
# Cost differences below both of these are measurement noise, not a faster host.
NOISE_S = 0.05
NOISE_SHARE = 0.2
# Sending a prompt elsewhere while its prefix is being evaluated evaluates that prefix twice: the requests
# that host delays meanwhile pay for it again, and a slot of its cache goes. So that evaluation is counted
# twice (going elsewhere must be quicker than waiting by this share of that evaluation to be worth it);
# rates measured under different contention make identical hosts look this far apart.
DUPLICATE_SHARE = 1.0
# Prompt evaluation speed assumed before any host reported one (tokens/s); only ratios matter then.
DEFAULT_PROMPT_RATE = 500.0


class CacheAware:
    name = "cache_aware"

    def __init__(self, stats: LatencyBook, caches: CacheBook, *, load_factor: float = 1.25,
                 min_match: int = MIN_MATCH) -> None:
        self._adaptive = Adaptive(stats)
        self._stats = stats
        self._caches = caches
        self.load_factor = load_factor
        self.min_match = min_match
        self._last: tuple[bytes, dict[str, int]] = (b"", {})  # the last prompt `route` matched, and its matches

    # A request without a prompt (an embedding, a load) has nothing to match: the adaptive order.
    def rank(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        return self._adaptive.rank(candidates)

    def best(self, candidates: Sequence[Candidate]) -> Candidate | None:
        return self._adaptive.best(candidates)

    def route(self, candidates: Sequence[Candidate], text: bytes) -> tuple[Candidate, str] | None:
        """The host for a prompt whose routing text is `text`, and why; None when every host is saturated."""
        free = [c for c in candidates if not c.host.saturated]
        if not free:
            return None
        # Priority tiers as the adaptive policy has them: a tier overflows to the next only when it is full.
        tier = min(c.host.tier for c in free)
        candidates = [c for c in candidates if c.host.tier <= tier]
        free = [c for c in free if c.host.tier == tier]
        matched = self._matches(candidates, text)
        self._last = (text, matched)  # what `expected` asks next, for the host chosen here
        bound = self._bound(candidates)
        within = [c for c in candidates if c.host.load + 1 <= bound]
        if max((matched.get(c.host.id, 0) for c in within), default=0) < self.min_match:
            return self._most_room([c for c in free if c in within] or free), self.name
        # A warm host whose slots are all busy may still take the prompt while within the bound: it queues
        # there for a slot (its cost counts the queue), where a cold host would evaluate the whole prompt.
        pool = within or free
        costs = {c.host.id: self._cost(c, len(text), matched.get(c.host.id, 0)) for c in pool}
        warm = min(pool, key=lambda c: (-matched.get(c.host.id, 0), costs[c.host.id], c.host.id))
        cheapest = min(pool, key=lambda c: (costs[c.host.id], c.host.id))
        # Estimates are noisy (EWMAs of a few requests): another host must be clearly cheaper to take a prompt
        # from the host that holds its prefix, or turns would wander on jitter and lose their cache.
        margin = max(NOISE_S, NOISE_SHARE * costs[warm.host.id])
        choice = cheapest if costs[cheapest.host.id] < costs[warm.host.id] - margin else warm
        length = matched.get(choice.host.id, 0)
        if length < self.min_match:
            return choice, self.name
        return choice, f"cache:{len(text[:length].decode('utf-8', 'ignore'))}"

    def expected(self, candidate: Candidate, text: bytes) -> float:
        """Seconds the prompt with routing text `text` should take on `candidate`'s host alone (no queue)."""
        last_text, last = self._last
        matched = (last if text is last_text else self._matches([candidate], text)).get(candidate.host.id, 0)
        return self._service(candidate, len(text), matched)

    def patience(self, candidates: Sequence[Candidate], text: bytes,
                 waiting: Mapping[str, int]) -> tuple[str, float] | None:
        """The host whose request in flight is evaluating this prompt's prefix, if waiting for that slot
        beats every host free now, and the seconds waiting stays worth it; None: route it now.

        `waiting`: requests already held per host (each is served there first, one warm service each).
        Waiting costs the running request's expected remainder plus a warm service per request held
        ahead; going now costs what `route` would pay. Another host must be clearly cheaper to take
        the prompt (`DUPLICATE_SHARE`): evaluating it twice also takes that host from other work.
        """
        # The common case first, without a look at the index: nothing in flight shares a prefix worth it.
        flights = {c.host.id: found for c in candidates
                   if (found := self._caches.in_flight(c.host.id, text)) is not None and found[0] >= self.min_match}
        if not flights:
            return None
        prompt = len(text)
        bound = self._bound(candidates)
        matched = self._matches(candidates, text)
        best: tuple[float, Candidate, float] | None = None
        for c in candidates:
            found = flights.get(c.host.id)
            # Worth waiting only for more than this host holds free now, within its bound once that request ends.
            if found is None or found[0] <= matched.get(c.host.id, 0) or c.host.load > bound:
                continue
            length, remaining = found
            service = self._service(c, prompt, length)
            cost = remaining + (waiting.get(c.host.id, 0) + 1) * service
            if best is None or cost < best[0]:
                best = (cost, c, service)
        if best is None:
            return None
        cost, chosen, service = best
        now = [c for c in candidates if not c.host.saturated and c.host.load + 1 <= bound] or [
            c for c in candidates if not c.host.saturated]
        if not now:
            return chosen.host.id, float("inf")  # every host is full: nothing to lose by waiting for this one
        # In seconds, as the wait is: an idle host takes a whole service however many slots it has.
        costs = {c.host.id: self._cost(c, prompt, matched.get(c.host.id, 0), absolute=True) for c in now}
        there = min(now, key=lambda c: (costs[c.host.id], c.host.id))
        going = costs[there.host.id]
        # The prefix evaluated a second time there is what is counted twice (not the answer, written anyway).
        again = self._prompt_seconds(there, prompt, matched.get(there.host.id, 0))
        limit = going + max(NOISE_S, DUPLICATE_SHARE * again)
        worth = limit - service * (waiting.get(chosen.host.id, 0) + 1)
        if cost >= limit or worth <= 0:
            return None
        return chosen.host.id, worth

    def _bound(self, candidates: Sequence[Candidate]) -> int:
        return load_bound({c.host.id: c.host.load for c in candidates}, self.load_factor) + BOUND_SLACK

    def _matches(self, candidates: Sequence[Candidate], text: bytes) -> dict[str, int]:
        # One index per served model; under quantization fallback candidates may serve different ones.
        out: dict[str, int] = {}
        for model in {c.model for c in candidates}:
            found = self._caches.match(model, text)
            out.update({c.host.id: found[c.host.id] for c in candidates if c.model == model and c.host.id in found})
        # A prefix whose slot is busy with another request is no prefix this request can use now.
        return {host: length for host, length in out.items() if not self._caches.busy(host, text, length)}

    def _cost(self, candidate: Candidate, prompt: int, matched: int, *, absolute: bool = False) -> float:
        """Expected seconds on this host: the prompt its cache lacks, then the output, behind its queue.

        Relative (the default, for ranking hosts): a share of a slot, so a host with free slots costs
        less the more it has. `absolute`: seconds, never less than one whole service.

        Priced from rates, not from the time-to-first-token EWMA the adaptive policy uses: that
        mixes prompt lengths and cache hits, so a host that just evaluated a long cold prompt would
        look slow to the very conversation whose cache it now holds.
        """
        host = candidate.host
        service = self._service(candidate, prompt, matched)
        queue = (host.load + 1) / max(1, host.parallel)
        cost = service * (max(1.0, queue) if absolute else queue)
        if not candidate.loaded:
            learned = self._stats.cold_load(normalize(candidate.model))
            cost += COLD_LOAD_PENALTY if learned is None else learned
        if not candidate.exact:
            cost += FALLBACK_PENALTY * service
        return cost / max(host.weight, 1e-6)

    def _service(self, candidate: Candidate, prompt: int, matched: int) -> float:
        """Seconds of work on this host: the prompt its cache lacks at its prompt rate, then the output."""
        generation = self._stats.generation_time(candidate.host.id, normalize(candidate.model))
        return self._prompt_seconds(candidate, prompt, matched) + generation

    def _prompt_seconds(self, candidate: Candidate, prompt: int, matched: int) -> float:
        """Seconds this host takes to evaluate the part of the prompt its cache lacks."""
        rate = self._caches.prompt_rate(candidate.host.id) or DEFAULT_PROMPT_RATE
        return max(0, prompt - matched) / CHARS_PER_TOKEN / rate

    def _most_room(self, pool: Sequence[Candidate]) -> Candidate:
        least = min(c.host.load for c in pool)
        idle = [c for c in pool if c.host.load == least]
        # Equal room (e.g. empty caches): the adaptive choice, which rotates over identical idle hosts.
        room = {c.host.id: self._caches.room(c.host, c.model) for c in idle}
        most = max(room.values())
        roomiest = [c for c in idle if room[c.host.id] == most]
        return self._adaptive.best(roomiest) or roomiest[0]
