"""The cache-aware policy: longest cached prefix within the load bound, priced in prompt-evaluation time."""

from __future__ import annotations

from olol.cluster import CacheBook, LatencyBook
from olol.proxy.affinity import prefix_text
from olol.proxy.policies import CacheAware, make_policy
from tests.proxy.fakes import cand, host

M = "llama3:latest"
SYSTEM = "You are a support agent for a company that sells very particular widgets. " * 30


def chat(*turns: str) -> bytes:
    messages = [{"role": "system", "content": SYSTEM}]
    messages += [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]
    text = prefix_text({"messages": messages})
    assert text is not None
    return text


def policy(book: CacheBook | None = None, stats: LatencyBook | None = None) -> CacheAware:
    return CacheAware(stats or LatencyBook(), book or CacheBook())


def test_equal_load_goes_to_the_longest_cached_prefix() -> None:
    book = CacheBook()
    a, b, c = host("a", loaded=[M]), host("b", loaded=[M]), host("c", loaded=[M])
    book.record(b, M, chat("hello"))
    choice, reason = policy(book).route([cand(a), cand(b), cand(c)], chat("hello", "hi!", "and then?")) or (None, "")
    assert choice is not None and choice.host is b
    assert reason == f"cache:{len(chat('hello')) // 64 * 64}"


def test_a_prefix_no_host_holds_goes_where_there_is_most_room() -> None:
    book = CacheBook()
    a, b = host("a", loaded=[M]), host("b", loaded=[M])
    book.record(a, M, b"x" * 4096)  # a's cache is partly used by something unrelated
    choice, reason = policy(book).route([cand(a), cand(b)], chat("a new question")) or (None, "")
    assert choice is not None and choice.host is b and reason == "cache_aware"


def test_unheld_prefixes_spread_over_the_hosts() -> None:
    book = CacheBook()
    hosts = [host(h, loaded=[M]) for h in "abcd"]
    router = policy(book)
    chosen = []
    for i in range(8):
        text = prefix_text({"messages": [{"role": "system", "content": f"agent {i} " * 200}]})
        assert text is not None
        choice, _ = router.route([cand(h) for h in hosts], text) or (None, "")
        assert choice is not None
        book.record(choice.host, M, text)
        chosen.append(choice.host.id)
    assert sorted(chosen) == sorted("abcd" * 2)  # each host holds two of the eight system prompts


def test_an_overloaded_warm_host_falls_back_to_the_adaptive_cost() -> None:
    book = CacheBook()
    warm = host("warm", loaded=[M], parallel=8, load=6)
    cold = host("cold", loaded=[M], parallel=8, load=1)
    book.record(warm, M, chat("hello"))
    # Bound: ceil(1.25 x (7 + 1) / 2) = 5; warm would hold 7.
    choice, reason = policy(book).route([cand(warm), cand(cold)], chat("hello", "hi", "more")) or (None, "")
    assert choice is not None and choice.host is cold and reason == "cache_aware"


def measured(stats: LatencyBook, book: CacheBook, host_id: str, prompt_rate: float, gen_rate: float) -> None:
    stats.record_generation(host_id, M, tokens=100, seconds=100 / gen_rate)
    book.observe(host_id, {"prompt_eval_count": int(prompt_rate), "prompt_eval_cached_count": 0,
                           "prompt_eval_duration": 10**9})


def test_a_fast_cold_host_beats_a_slow_warm_one() -> None:
    stats, book = LatencyBook(alpha=1.0), CacheBook()
    slow, fast = host("slow", loaded=[M]), host("fast", loaded=[M])
    measured(stats, book, "slow", prompt_rate=20, gen_rate=5)  # 100 output tokens: 20 s here
    measured(stats, book, "fast", prompt_rate=1000, gen_rate=100)  # the whole ~580-token prompt: 0.6 s
    book.record(slow, M, chat("hello"))
    choice, reason = policy(book, stats).route([cand(slow), cand(fast)], chat("hello", "hi", "more")) or (None, "")
    assert choice is not None and choice.host is fast and reason == "cache_aware"


def test_a_slow_warm_host_beats_a_fast_cold_one_when_the_prefix_is_worth_more() -> None:
    stats, book = LatencyBook(alpha=1.0), CacheBook()
    slow, fast = host("slow", loaded=[M]), host("fast", loaded=[M])
    measured(stats, book, "slow", prompt_rate=100, gen_rate=100)  # ~0.15 s of prompt left + 1 s of output
    measured(stats, book, "fast", prompt_rate=200, gen_rate=200)  # ~2.9 s of prompt + 0.5 s of output
    book.record(slow, M, chat("hello"))
    choice, reason = policy(book, stats).route([cand(slow), cand(fast)], chat("hello", "hi", "more")) or (None, "")
    assert choice is not None and choice.host is slow and reason.startswith("cache:")


def test_jitter_does_not_move_a_prompt_off_its_cache() -> None:
    stats, book = LatencyBook(alpha=1.0), CacheBook()
    a, b = host("a", loaded=[M]), host("b", loaded=[M])
    measured(stats, book, "a", prompt_rate=1e6, gen_rate=900)  # prompts nearly free: only output speed differs
    measured(stats, book, "b", prompt_rate=1e6, gen_rate=1000)
    book.record(a, M, chat("hello"))
    choice, _ = policy(book, stats).route([cand(a), cand(b)], chat("hello", "hi", "more")) or (None, "")
    assert choice is not None and choice.host is a


def test_all_saturated_is_none_and_prompts_are_per_model() -> None:
    book = CacheBook()
    a = host("a", [M, "other:latest"], loaded=[M], parallel=1, load=1)
    assert policy(book).route([cand(a)], chat("x")) is None
    b = host("b", [M, "other:latest"], loaded=[M])
    c = host("c", [M, "other:latest"], loaded=[M])
    book.record(b, "other:latest", chat("hello"))
    assert book.match(M, chat("hello")) == {}
    assert book.match("other", chat("hello")) == {"b": len(chat("hello")) // 64 * 64}
    choice, _ = policy(book).route([cand(b, "other:latest"), cand(c, "other:latest")], chat("hello", "x")) or (None, "")
    assert choice is not None and choice.host is b


def test_hit_rate_and_index_size_per_host() -> None:
    book = CacheBook()
    a = host("a", loaded=[M])
    book.record(a, M, chat("hello"))
    book.observe("a", {"prompt_eval_count": 600, "prompt_eval_cached_count": 450, "prompt_eval_duration": 10**9})
    book.observe("a", {"prompt_eval_count": 400})  # no cache report (an older Ollama): not counted
    state = book.to_json("a")
    assert state["prompt_tokens"] == 600 and state["cached_tokens"] == 450 and state["hit_rate"] == 0.75
    assert state["prompt_tokens_per_s"] == 150.0
    assert state["index_bytes"] == len(chat("hello")) // 64 * 64 and state["index_prompts"] == 1
    book.forget("a")
    assert book.to_json("a")["index_bytes"] == 0


def test_budget_follows_context_times_slots() -> None:
    a = host("a", parallel=2)
    a.set_running([{"name": M, "context_length": 8192}])
    assert CacheBook.budget(a, M) == 8192 * 2 * 4


def test_made_by_name() -> None:
    assert make_policy("cache-aware", LatencyBook()).name == "cache_aware"


def test_a_busy_warm_host_within_the_bound_queues_the_turn_rather_than_go_cold() -> None:
    stats, book = LatencyBook(alpha=1.0), CacheBook()
    warm = host("warm", loaded=[M], parallel=2, load=2)  # both slots busy
    cold = host("cold", loaded=[M], parallel=2, load=1)
    for h in ("warm", "cold"):
        measured(stats, book, h, prompt_rate=100, gen_rate=100)
    book.record(warm, M, chat("hello"))
    # Bound: ceil(1.25 x (3 + 1) / 2) = 3. Warm: ~1.2 s x 3/2 in its queue; cold: ~6.9 s x 2/2.
    choice, reason = policy(book, stats).route([cand(warm), cand(cold)], chat("hello", "hi", "more")) or (None, "")
    assert choice is not None and choice.host is warm and reason.startswith("cache:")


def test_a_miss_teaches_how_many_prompts_a_host_keeps() -> None:
    """An engine without a host-memory prompt cache keeps one prompt a slot: the index learns it from
    a prompt routed for its cache that came back uncached, and stops promising what the host let go."""
    book = CacheBook()
    a = host("a", loaded=[M])
    prompts = [prefix_text({"messages": [{"role": "system", "content": f"agent {i} " * 200}]}) for i in range(3)]
    assert all(prompts)
    for text in prompts:
        book.answered(a, M, text or b"", 0, {"prompt_eval_count": 400, "prompt_eval_cached_count": 0})
    assert book.to_json("a")["index_prompts"] == 3 and book.cap("a") is None
    first = prompts[0] or b""
    expected = book.match(M, first)["a"]
    # Sent to `a` for its cache, evaluated from scratch: it keeps fewer than three.
    book.answered(a, M, first, expected, {"prompt_eval_count": 400, "prompt_eval_cached_count": 2})
    assert book.cap("a") == 2 and book.to_json("a")["index_prompts"] == 2
    assert "a" not in book.match(M, prompts[1] or b"")  # the least recently sent went
    assert book.match(M, first)["a"] == expected  # the prompt just evaluated is there
    # A hit at the bound raises it again: the host may keep more than the miss suggested.
    book.answered(a, M, first, expected, {"prompt_eval_count": 400, "prompt_eval_cached_count": 390})
    assert book.cap("a") == 3
    book.answered(a, M, prompts[1] or b"", 0, {"prompt_eval_count": 400, "prompt_eval_cached_count": 0})
    assert book.to_json("a")["index_prompts"] == 3 and book.to_json("a")["prompt_cap"] == 3


def test_a_prefix_busy_in_a_running_request_is_not_offered_to_another() -> None:
    book = CacheBook()
    a, b = host("a", loaded=[M]), host("b", loaded=[M])
    first = chat("hello")
    book.record(a, M, first)
    book.record(b, M, first)
    book.begin("a", chat("hello", "a question still running"))
    choice, reason = policy(book).route([cand(a), cand(b)], chat("hello", "another")) or (None, "")
    assert choice is not None and choice.host is b and reason.startswith("cache:")
    book.end("a", chat("hello", "a question still running"))
    assert not book.busy("a", chat("hello", "another"), len(first) // 64 * 64)


def slow_prompts(stats: LatencyBook, book: CacheBook, *hosts: str) -> None:
    """Hosts that evaluate 100 prompt tokens/s and write 100 tokens/s: the system prompt costs ~6 s cold."""
    for h in hosts:
        measured(stats, book, h, prompt_rate=100, gen_rate=100)


def test_a_prefix_in_flight_is_waited_for_when_a_cold_start_elsewhere_costs_more() -> None:
    stats, book = LatencyBook(alpha=1.0), CacheBook()
    a, b = host("a", loaded=[M], parallel=2, load=1), host("b", loaded=[M], parallel=2)
    slow_prompts(stats, book, "a", "b")
    book.begin("a", chat("hello", "the first question"), expected_s=1.0)
    hold = policy(book, stats).patience([cand(a), cand(b)], chat("hello", "a second question"), {})
    assert hold is not None and hold[0] == "a"
    # Worth waiting until a cold start on b (the whole prompt) would have been as quick.
    cold = policy(book, stats).expected(cand(b), chat("hello", "a second question"))
    assert 1.0 < hold[1] < cold * 2


def test_a_cold_start_elsewhere_wins_when_the_prefix_frees_later_than_that() -> None:
    stats, book = LatencyBook(alpha=1.0), CacheBook()
    a, b = host("a", loaded=[M], parallel=2, load=1), host("b", loaded=[M], parallel=2)
    slow_prompts(stats, book, "a", "b")
    book.begin("a", chat("hello", "the first question"), expected_s=90.0)  # e.g. a long answer ahead
    assert policy(book, stats).patience([cand(a), cand(b)], chat("hello", "a second question"), {}) is None


def test_the_line_for_a_prefix_makes_waiting_dearer_until_another_host_takes_it() -> None:
    stats, book = LatencyBook(alpha=1.0), CacheBook()
    a, b = host("a", loaded=[M], parallel=2, load=1), host("b", loaded=[M], parallel=2)
    slow_prompts(stats, book, "a", "b")
    book.begin("a", chat("hello", "the first question"), expected_s=1.0)
    router, text = policy(book, stats), chat("hello", "another question")
    waits = [router.patience([cand(a), cand(b)], text, {"a": held}) for held in range(0, 200, 10)]
    assert waits[0] is not None and waits[-1] is None
    worth = [w[1] for w in waits if w is not None]
    assert worth == sorted(worth, reverse=True)  # each one held ahead leaves less worth waiting for


def test_nothing_in_flight_or_a_short_shared_head_is_routed_now() -> None:
    stats, book = LatencyBook(alpha=1.0), CacheBook()
    a, b = host("a", loaded=[M], parallel=2), host("b", loaded=[M], parallel=2)
    slow_prompts(stats, book, "a", "b")
    assert policy(book, stats).patience([cand(a), cand(b)], chat("hello"), {}) is None
    book.begin("a", b"x" * 2000, expected_s=1.0)  # nothing in common with the prompt
    assert policy(book, stats).patience([cand(a), cand(b)], chat("hello"), {}) is None
    # Held free on b already: nothing to wait for on a.
    book.begin("a", chat("hello", "q"), expected_s=1.0)
    book.record(b, M, chat("hello", "q"))
    assert policy(book, stats).patience([cand(a), cand(b)], chat("hello", "q", "a", "r"), {}) is None


def test_a_priority_tier_overflows_to_the_next_only_when_full_warm_or_not() -> None:
    book = CacheBook()
    first = host("first", loaded=[M], parallel=1)
    backup = host("backup", loaded=[M], parallel=1, tier=1)
    book.record(backup, M, chat("hello"))  # the backup tier holds the prefix
    choice, _ = policy(book).route([cand(first), cand(backup)], chat("hello", "hi", "more")) or (None, "")
    assert choice is not None and choice.host is first
    first.in_flight = 1  # full: now the next tier, and its cache
    choice, reason = policy(book).route([cand(first), cand(backup)], chat("hello", "hi", "more")) or (None, "")
    assert choice is not None and choice.host is backup and reason.startswith("cache:")
