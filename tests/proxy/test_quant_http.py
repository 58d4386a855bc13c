"""Quantization-aware fallback end to end; the reply says which model served it."""

from __future__ import annotations

import aiohttp
import ollama
import pytest

from tests.proxy.helpers import proxy_over

Q4 = "llama3.2:1b-q4_0"
Q8 = "llama3.2:1b-q8_0"


@pytest.fixture(autouse=True)
def _facade() -> None:
    pytest.importorskip("olol._fast.quant")


async def test_q4_request_served_by_q8_and_says_so(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    sim = await ollama_sim_factory(models=[Q8, "phi3:mini"])
    async with proxy_over(sim) as proxy, aiohttp.ClientSession() as http:
        async with http.post(proxy.url + "/api/generate", json={"model": Q4, "prompt": "x", "stream": False}) as r:
            assert r.status == 200
            assert r.headers["X-OLOL-Model"] == Q8 and "fallback" in r.headers["X-OLOL-Route"]
            assert (await r.json())["model"] == Q8
        reply = await ollama.AsyncClient(host=proxy.url).chat(model=Q4, messages=[{"role": "user", "content": "x"}])
        assert reply.model == Q8
    assert sim.request_log[-1].body["model"] == Q8


async def test_loaded_compatible_quant_preferred_over_cold_exact(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    cold = await ollama_sim_factory(models=[Q4])
    warm = await ollama_sim_factory(models=[Q8])
    async with proxy_over(warm) as warm_only:
        await ollama.AsyncClient(host=warm_only.url).generate(model=Q8, prompt="")  # load it
    body = {"model": Q4, "prompt": "x", "stream": False}
    async with proxy_over(cold, warm) as proxy, aiohttp.ClientSession() as http, \
            http.post(proxy.url + "/api/generate", json=body) as r:
        assert r.headers["X-OLOL-Host"] == warm.url and r.headers["X-OLOL-Model"] == Q8


async def test_no_fallback_when_disabled_or_lower_quality(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    sim = await ollama_sim_factory(models=[Q8, Q4.replace("q4_0", "q2_k")])
    async with proxy_over(sim, quant_fallback=False) as proxy:
        with pytest.raises(ollama.ResponseError) as info:
            await ollama.AsyncClient(host=proxy.url).generate(model=Q4, prompt="x")
        assert info.value.status_code == 404 and f"model '{Q4}' not found" in info.value.error
    async with proxy_over(sim) as proxy:
        with pytest.raises(ollama.ResponseError) as info:  # q8_0 cannot be served by anything lower
            await ollama.AsyncClient(host=proxy.url).generate(model="llama3.2:1b-f16", prompt="x")
        assert info.value.status_code == 404
