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
            # Past SHORT_PROMPT: followed by the prefix index, not the conversation key of a chat's short first turns.
            system = f"You are the {agent} agent. Follow the {agent} handbook to the letter. " * 20
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


async def test_a_prefix_being_evaluated_is_waited_for_not_evaluated_twice(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    """An engine's slots do not share a prompt still being evaluated: a second request with the same long
    prefix sent now would evaluate it again, here or on the other host. Waiting for the first one's slot
    costs less (nothing measured says a cold start elsewhere is quicker), so the proxy holds it, then
    sends it after the first, to the same host, for its cache; later requests follow the prefix there."""
    import asyncio

    sims = await ollama_sim_factory.many(2, parallel=2, latency=0.3)
    system = "You are the billing agent. Follow the billing handbook to the letter. " * 20

    async def ask(http: aiohttp.ClientSession, question: str) -> tuple[str, str]:
        body = {"model": MODEL, "messages": [{"role": "system", "content": system},
                                             {"role": "user", "content": question}]}
        async with http.post(proxy.url + "/api/chat", json=body) as r:
            await ndjson(r)
            return r.headers["X-OLOL-Host"], r.headers["X-OLOL-Route"]

    async with proxy_over(*sims, balancer="cache_aware") as proxy, aiohttp.ClientSession() as http:
        first = asyncio.create_task(ask(http, "question one"))
        while not any(h["in_flight"] for h in (await (await http.get(proxy.url + "/api/status")).json())["hosts"]):
            await asyncio.sleep(0.01)  # the first is on its host: the second finds its prefix in flight
        second = await ask(http, "question two")
        first_host, first_route = await first
        assert first_route == "cache_aware"  # nobody held it yet: the host with the most room
        assert second[0] == first_host
        reason, queued = second[1].split(";")
        assert reason.startswith("cache:") and float(queued.removeprefix("queued=")) > 0.05, second
        later = [await ask(http, f"question {i}") for i in range(3)]
        assert all(h == first_host and reason.startswith("cache:") for h, reason in later), later
