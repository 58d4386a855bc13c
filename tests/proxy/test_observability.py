"""`/api/status`, Prometheus `/metrics` (a registry per proxy), and what they report."""

from __future__ import annotations

import aiohttp
import ollama

from tests.proxy.helpers import proxy_over


async def test_status_describes_hosts_models_sessions_queues(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    sims = await ollama_sim_factory.many(2)
    async with proxy_over(*sims) as proxy, aiohttp.ClientSession() as http:
        await ollama.AsyncClient(host=proxy.url).chat(model="llama3.2", messages=[{"role": "user", "content": "x"}])
        async with http.get(proxy.url + "/api/status") as r:
            status = await r.json()
    assert status["balancer"] == "cache_aware" and status["queues"] == {}
    assert {h["id"] for h in status["hosts"]} == {s.url for s in sims}
    host = next(h for h in status["hosts"] if h["latency"])
    assert host["healthy"] and host["capacity"] == 4 and host["version"] == "0.12.6"
    assert host["loaded"] == ["llama3.2:latest"]
    assert host["latency"]["llama3.2:latest"]["ttft_s"] > 0
    assert sorted(status["models"]["llama3.2:latest"]) == sorted(s.url for s in sims)
    assert status["sessions"]["sessions"] == 1


async def test_metrics_per_proxy_registry(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    sim = await ollama_sim_factory()
    async with proxy_over(sim) as first, proxy_over(sim) as second, aiohttp.ClientSession() as http:
        await ollama.AsyncClient(host=first.url).generate(model="llama3.2", prompt="x")
        async with http.get(first.url + "/metrics") as r:
            assert r.headers["Content-Type"].startswith("text/plain")
            text = await r.text()
        async with http.get(second.url + "/metrics") as r:
            other = await r.text()
    labels = f'endpoint="generate",host="{sim.url}",model="llama3.2:latest",status="200"'
    assert f"olol_requests_total{{{labels}}} 1.0" in text
    assert f'olol_ttft_seconds_count{{host="{sim.url}",model="llama3.2:latest"}} 1.0' in text
    assert f'olol_host_up{{host="{sim.url}"}} 1.0' in text
    assert "olol_tokens_per_second_bucket" in text
    assert "olol_requests_total{" not in other  # the second proxy counted nothing
