"""A session stays on one host (bounded-load consistent hashing) and moves, history and all, when it dies."""

from __future__ import annotations

from collections import Counter

import aiohttp

from tests.proxy.helpers import proxy_over
from tests.sessions.helpers import chats_seen, create, get, reply_text, say, transcript


async def test_each_session_stays_on_one_host_and_sessions_spread(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    sims = await ollama_sim_factory.many(3)
    async with proxy_over(*sims) as proxy, aiohttp.ClientSession() as http:
        homes: dict[str, set[str]] = {}
        for _ in range(12):
            session = await create(http, proxy.url)
            homes[session["id"]] = set()
            for i in range(3):
                _, headers = await say(http, proxy.url, session["id"], f"turn {i}")
                homes[session["id"]].add(headers["X-OLOL-Host"])
                assert headers["X-OLOL-Route"].startswith("affinity:")
    assert all(len(hosts) == 1 for hosts in homes.values())
    spread = Counter(next(iter(h)) for h in homes.values())
    assert len(spread) >= 2  # random session ids hash all over the ring


async def test_host_death_moves_the_session_with_its_full_history(ollama_sim_process, ollama_sim) -> None:  # type: ignore[no-untyped-def]
    victim = await ollama_sim_process(models=["llama3.2"])
    async with proxy_over(victim.url, ollama_sim, probe_interval=0.2) as proxy, aiohttp.ClientSession() as http:
        # Find a session the ring puts on the victim (about half of them).
        for _ in range(40):
            session = await create(http, proxy.url, system="remember everything")
            _, headers = await say(http, proxy.url, session["id"], "my name is Ada")
            if headers["X-OLOL-Host"] == victim.url:
                break
        else:
            raise AssertionError("no session landed on the victim host")
        lines, headers = await say(http, proxy.url, session["id"], "I like tea")
        assert headers["X-OLOL-Host"] == victim.url and lines[-1]["done"]
        before = transcript(await get(http, proxy.url, session["id"]))

        victim.kill()  # SIGKILL: a crash between two turns
        await victim.wait()
        lines, headers = await say(http, proxy.url, session["id"], "what is my name?")
        after = await get(http, proxy.url, session["id"])

    assert headers["X-OLOL-Host"] == ollama_sim.url and lines[-1]["done"]
    assert after["host"] == ollama_sim.url
    # The new host saw the whole conversation, including the turns the dead host answered.
    assert chats_seen(ollama_sim)[-1] == [*before, {"role": "user", "content": "what is my name?"}]
    assert transcript(after) == [
        *before,
        {"role": "user", "content": "what is my name?"},
        {"role": "assistant", "content": reply_text(lines)},
    ]


async def test_host_dying_mid_turn_loses_that_turn_only(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    sims = await ollama_sim_factory.many(2)
    async with proxy_over(*sims) as proxy, aiohttp.ClientSession() as http:
        session = await create(http, proxy.url)
        _, headers = await say(http, proxy.url, session["id"], "first")
        home = next(s for s in sims if s.url == headers["X-OLOL-Host"])
        other = next(s for s in sims if s is not home)
        home.die_after_tokens = 3  # the connection drops mid-reply
        lines, _ = await say(http, proxy.url, session["id"], "second")
        assert "error" in lines[-1]  # after the first byte the client is told, not retried
        lines, headers = await say(http, proxy.url, session["id"], "second, again")
        stored = await get(http, proxy.url, session["id"])
    assert headers["X-OLOL-Host"] == other.url and lines[-1]["done"]
    assert [m["content"] for m in stored["messages"] if m["role"] == "user"] == ["first", "second, again"]
    assert chats_seen(other)[-1][0]["content"] == "first"
