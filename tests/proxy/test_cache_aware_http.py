"""Cache-aware routing through the proxy: turns follow their prefix, headers say so, status shows the index."""

from __future__ import annotations

import aiohttp

from tests.proxy.helpers import ndjson, proxy_over

MODEL = "llama3.2"


def conversation(system: str, turns: int) -> list[list[dict[str, str]]]:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "first question"}]
    out = []
    for i in range(turns):
        out.append(list(messages))
        messages += [{"role": "assistant", "content": f"answer {i}"}, {"role": "user", "content": f"more {i}"}]
    return out


async def test_turns_and_shared_system_prompts_follow_the_cache(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    sims = await ollama_sim_factory.many(3)
    async with proxy_over(*sims, balancer="cache_aware") as proxy, aiohttp.ClientSession() as http:
        homes = {}
        for agent in ("billing", "search", "travel"):
            system = f"You are the {agent} agent. Follow the {agent} handbook to the letter. " * 12
            routes = []
            for messages in conversation(system, 3):
                async with http.post(proxy.url + "/api/chat", json={"model": MODEL, "messages": messages}) as r:
                    await ndjson(r)
                    routes.append((r.headers["X-OLOL-Host"], r.headers["X-OLOL-Route"]))
            assert routes[0][1] == "cache_aware"  # nobody held it: the host with the most room
            assert {h for h, _ in routes} == {routes[0][0]}
            # The match is in whole 64-byte blocks of what the previous turn sent.
            assert all(reason.startswith("cache:") and int(reason[6:]) > len(system) - 64 for _, reason in routes[1:])
            homes[agent] = routes[0][0]
            # Another user under the same system prompt: same host, through /api/generate's layout too.
            async with http.post(proxy.url + "/api/generate", json={
                    "model": MODEL, "system": system, "prompt": "an unrelated question", "stream": False}) as r:
                assert r.headers["X-OLOL-Host"] == homes[agent]
        assert len(set(homes.values())) == 3  # three prefixes, three hosts: together they hold all of them
        async with http.get(proxy.url + "/api/status") as r:
            hosts = (await r.json())["hosts"]
        assert all(h["cache"]["index_bytes"] > 0 and h["cache"]["index_prompts"] >= 1 for h in hosts)
        async with http.get(proxy.url + "/metrics") as r:
            assert "olol_host_prefix_index_bytes{" in await r.text()


async def test_session_header_still_pins(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    sims = await ollama_sim_factory.many(3)
    async with proxy_over(*sims, balancer="cache_aware") as proxy, aiohttp.ClientSession() as http:
        hosts = set()
        for i in range(5):
            async with http.post(proxy.url + "/api/generate", headers={"X-OLOL-Session": "user-7"},
                                 json={"model": MODEL, "prompt": f"unrelated prompt {i}", "stream": False}) as r:
                hosts.add(r.headers["X-OLOL-Host"])
                assert r.headers["X-OLOL-Route"].startswith("affinity:")
        assert len(hosts) == 1


async def test_a_prefix_is_followed_once_answered_not_while_its_first_request_runs(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    """An engine's slots do not share a prompt still being evaluated: a second request with the same long
    prefix, sent while the first runs, would only queue behind it cold. It goes to the other host; once
    both answered, later requests follow the prefix to either."""
    import asyncio

    sims = await ollama_sim_factory.many(2, parallel=2, latency=0.3)
    system = "You are the billing agent. Follow the billing handbook to the letter. " * 12

    async def ask(http: aiohttp.ClientSession, question: str) -> tuple[str, str]:
        body = {"model": MODEL, "messages": [{"role": "system", "content": system},
                                             {"role": "user", "content": question}]}
        async with http.post(proxy.url + "/api/chat", json=body) as r:
            await ndjson(r)
            return r.headers["X-OLOL-Host"], r.headers["X-OLOL-Route"]

    async with proxy_over(*sims, balancer="cache_aware") as proxy, aiohttp.ClientSession() as http:
        first, second = await asyncio.gather(ask(http, "question one"), ask(http, "question two"))
        assert first[1] == second[1] == "cache_aware"  # nobody held it yet: most room, then the other host
        assert first[0] != second[0]
        later = [await ask(http, f"question {i}") for i in range(3)]
        assert all(reason.startswith("cache:") for _, reason in later), later
