"""Smart quantization: each host gets the best level that fits its memory; substitutions are visible."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest

from olol.placement.quant import estimated_bytes, variant_name, variants_for_host
from tests.proxy.helpers import ndjson, proxy_over
from tests.support.ollama_sim import ModelSpec

GIB = 1 << 30
LEVELS = ("q8_0", "q6_K", "q4_K_M", "q4_0", "q2_K")
REGISTRY = [ModelSpec(f"llama3:8b-{level}") for level in LEVELS]


def test_levels_follow_memory() -> None:
    assert variant_name("llama3:8b", "q4_k_m") == "llama3:8b-q4_K_M"
    assert variant_name("llama3.2", "q8_0") == "llama3.2:q8_0"
    big = variants_for_host("llama3:8b", quantize=None, free_bytes=16 * GIB, parameters=8e9)
    small = variants_for_host("llama3:8b", quantize=None, free_bytes=6 * GIB, parameters=8e9)
    assert big[0] == "llama3:8b-q8_0" and small[0] == "llama3:8b-q4_K_M"
    assert estimated_bytes(8e9, small[0].rsplit("-", 1)[1]) <= 6 * GIB < estimated_bytes(8e9, "q5_0")
    assert big[-1] == small[-1] == "llama3:8b"  # the registry's default build is the last resort
    # Asked explicitly: the asked level first, then the best that fits.
    assert variants_for_host("llama3:8b", quantize="q5_0", free_bytes=6 * GIB, parameters=8e9)[:2] == [
        "llama3:8b-q5_0",
        "llama3:8b-q4_K_M",
    ]
    # Nothing known about the host: no basis for a choice, the name as given.
    assert variants_for_host("llama3:8b", quantize=None, free_bytes=None, parameters=8e9) == ["llama3:8b"]


async def _pull(url: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.post(url + "/api/pull", json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await ndjson(resp)


async def test_each_host_gets_the_best_level_its_memory_allows(ollama_sim_factory, caplog) -> None:  # type: ignore[no-untyped-def]
    big, small = await ollama_sim_factory.many(2, models=[], registry=REGISTRY)
    async with proxy_over(big, small) as proxy:
        hosts = proxy.context.cluster.hosts
        hosts[big.url].ram_free, hosts[small.url].ram_free = 16 * GIB, 6 * GIB
        with caplog.at_level(logging.INFO, logger="olol.placement"):
            lines = await _pull(proxy.url, {"model": "llama3:8b", "replicas": 2})
        final = lines[-1]
        assert final["status"] == "success", final
        assert final["olol"]["models"] == {big.url: "llama3:8b-q8_0", small.url: "llama3:8b-q4_K_M"}
        placed = {s["placed"] for s in final["olol"]["substitutions"]}
        assert placed == {"llama3:8b-q8_0", "llama3:8b-q4_K_M"}
        assert list(big.models) == ["llama3:8b-q8_0"] and list(small.models) == ["llama3:8b-q4_k_m"]
        # A request for the model without a level is served by either variant (quantization fallback).
        async with (
            aiohttp.ClientSession() as http,
            http.post(proxy.url + "/api/generate", json={"model": "llama3:8b", "prompt": "hi", "stream": False}) as r,
        ):
            assert r.status == 200 and r.headers["X-OLOL-Model"].startswith("llama3:8b-")
    assert any("llama3:8b" in rec.getMessage() for rec in caplog.records)


async def test_asked_level_missing_from_registry_falls_back_to_the_best_that_fits(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    sim = await ollama_sim_factory(models=[], registry=REGISTRY)  # no q5_0 in the registry
    async with proxy_over(sim) as proxy:
        proxy.context.cluster.hosts[sim.url].ram_free = 6 * GIB
        lines = await _pull(proxy.url, {"model": "llama3:8b", "quantize": "q5_0"})
        final = lines[-1]
        assert final["status"] == "success", final
        assert final["olol"]["models"] == {sim.url: "llama3:8b-q4_K_M"}
        assert final["olol"]["substitutions"][0]["requested"] == "llama3:8b-q5_0"
        assert any("llama3:8b-q5_0 is not in the registry" in line["status"] for line in lines)


async def test_asked_level_replaced_by_a_compatible_one_already_loaded(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    holder = await ollama_sim_factory(models=[ModelSpec("llama3:8b-q8_0")], registry=[])
    empty = await ollama_sim_factory(models=[], registry=REGISTRY)
    async with proxy_over(holder, empty) as proxy, aiohttp.ClientSession() as http:
        async with http.post(proxy.url + "/api/generate", json={"model": "llama3:8b-q8_0", "prompt": ""}) as r:
            assert r.status == 200  # loads it
        await proxy.context.refresh([holder.url])
        lines = await _pull(proxy.url, {"model": "llama3:8b", "quantize": "q5_0", "replicas": 1})
        final = lines[-1]
        assert final["status"] == "success", final
        sub = final["olol"]["substitutions"][0]
        assert sub["requested"] == "llama3:8b-q5_0" and sub["placed"] == "llama3:8b-q8_0"
        assert "already loaded" in sub["reason"]
        assert lines[0]["status"].startswith("using llama3:8b-q8_0 for llama3:8b-q5_0")
        assert empty.requests["/api/pull"] == 0  # nothing downloaded


async def test_unknown_quantization_is_a_400(ollama_sim) -> None:  # type: ignore[no-untyped-def]
    async with (
        proxy_over(ollama_sim) as proxy,
        aiohttp.ClientSession() as http,
        http.post(proxy.url + "/api/pull", json={"model": "llama3:8b", "quantize": "q9_9"}) as r,
    ):
        assert r.status == 400 and "unknown quantization" in (await r.json())["error"]


@pytest.mark.parametrize("bad", [{"replicas": 0}, {"replicas": "x"}, {"hosts": "h1"}])
async def test_bad_placement_fields_are_400(ollama_sim, bad) -> None:  # type: ignore[no-untyped-def]
    async with (
        proxy_over(ollama_sim) as proxy,
        aiohttp.ClientSession() as http,
        http.post(proxy.url + "/api/pull", json={"model": "llama3.2", **bad}) as r,
    ):
        assert r.status == 400
