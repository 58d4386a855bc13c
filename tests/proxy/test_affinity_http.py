"""Session affinity end to end: follow-up turns stay put; bounded load holds; hit rate is exported."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.proxy.helpers import ndjson, proxy_over


def conversation(turns: int, system: str = "be brief") -> list[list[dict[str, str]]]:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "first question"}]
    out = []
    for i in range(turns):
        out.append(list(messages))
        messages += [{"role": "assistant", "content": f"answer {i}"}, {"role": "user", "content": f"more {i}"}]
    return out


async def test_follow_up_turns_land_on_the_same_host(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    sims = await ollama_sim_factory.many(3)
    async with proxy_over(*sims) as proxy, aiohttp.ClientSession() as http:
        for system in ("a", "b", "c", "d"):
            hosts = set()
            for messages in conversation(4, system):
                async with http.post(proxy.url + "/api/chat", json={"model": "llama3.2", "messages": messages}) as r:
                    await ndjson(r)
                    hosts.add(r.headers["X-OLOL-Host"])
            assert len(hosts) == 1, hosts
        async with http.get(proxy.url + "/api/status") as r:
            sessions = (await r.json())["sessions"]
        assert sessions["sessions"] == 4 and sessions["hits"] == 12 and sessions["hit_rate"] == 1.0
        async with http.get(proxy.url + "/metrics") as r:
            assert 'olol_affinity_lookups_total{outcome="hit"} 12.0' in await r.text()


async def test_session_header_pins_unrelated_requests(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    sims = await ollama_sim_factory.many(3)
    async with proxy_over(*sims) as proxy, aiohttp.ClientSession() as http:
        hosts = set()
        for i in range(6):
            async with http.post(proxy.url + "/api/generate", headers={"X-OLOL-Session": "user-42"},
                                 json={"model": "llama3.2", "prompt": f"p{i}", "stream": False}) as r:
                assert r.status == 200
                hosts.add(r.headers["X-OLOL-Host"])
                assert r.headers["X-OLOL-Route"].startswith("affinity:")
        assert len(hosts) == 1


async def test_bounded_load_moves_the_overflow(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    sims = await ollama_sim_factory.many(2, parallel=16, latency=0.3)
    async with proxy_over(*sims, default_parallel=16) as proxy, aiohttp.ClientSession() as http:
        async def one() -> str:
            async with http.post(proxy.url + "/api/generate", headers={"X-OLOL-Session": "hot"},
                                 json={"model": "llama3.2", "prompt": "x", "stream": False}) as r:
                return r.headers["X-OLOL-Host"]

        hosts = await asyncio.gather(*(one() for _ in range(10)))
    # One hot conversation, 10 concurrent turns: no host above 1.25 x the mean (ceil(1.25 * 10 / 2) = 7).
    assert max(s.max_in_flight for s in sims) <= 7
    assert len(set(hosts)) == 2
