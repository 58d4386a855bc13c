"""`--min-replicas`: a model that loses a host is copied to another one, without internet access."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.placement.models_dir import gguf_bytes, write_ollama_model
from tests.proxy.helpers import ndjson, proxy_over
from tests.support.ollama_sim import ModelSpec

MODEL = "tiny-chat:latest"


async def test_a_dead_replica_is_replaced_by_a_lan_copy(nodes) -> None:  # type: ignore[no-untyped-def]
    hosts = await nodes(3, registry=None)
    laid = write_ollama_model(hosts[0].models_dir, MODEL, gguf_bytes(1024 * 1024, seed=5))
    hosts[0].sim.add_model(ModelSpec(MODEL))
    async with proxy_over(*(h.target for h in hosts), replica_grace=0.3) as proxy, aiohttp.ClientSession() as http:
        async with http.post(proxy.url + "/api/pull", json={"model": MODEL, "replicas": 2, "min_replicas": 2}) as r:
            final = (await ndjson(r))[-1]
        assert final["status"] == "success", final
        second = next(h for h in final["olol"]["hosts"] if h != hosts[0].target)
        spare = next(h for h in hosts if h.target not in final["olol"]["hosts"])
        await next(h for h in hosts if h.target == second).stop_agent(kill=True)
        # The keeper notices the death, waits out the grace period, then copies from the survivor.
        for _ in range(100):
            if proxy.context.cluster.hosts[spare.target].has_model(MODEL):
                break
            await asyncio.sleep(0.1)
        assert proxy.context.cluster.hosts[spare.target].has_model(MODEL)
        blob = spare.models_dir / "blobs" / laid.weights_digest.replace(":", "-")
        assert blob.read_bytes() == laid.weights
        async with http.get(proxy.url + "/api/status") as r:
            placements = (await r.json())["placements"]
        assert placements["min_replicas"]["models"] == {MODEL: 2}
        job = next(j for j in placements["finished"] if j["reason"] == "min-replicas")
        assert job["hosts"][spare.target]["via"] == f"copy from {hosts[0].target}"


async def test_variants_count_as_replicas_and_a_shortfall_backs_off(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    sims = await ollama_sim_factory.many(2, models=[ModelSpec("llama3:8b-q8_0")], registry=[])
    async with proxy_over(*sims, replica_grace=0) as proxy:
        placement = proxy.context.placement
        assert placement is not None
        keeper = placement.keeper
        keeper.set_policy("llama3:8b", 2)  # held as a q8_0 variant on both hosts: satisfied
        assert await keeper.check() == [] and not placement.jobs.finished
        keeper.set_policy("llama3:8b", 3)  # only two hosts exist: one attempt, then a pause
        assert await keeper.check() == []
        assert await keeper.check() == []
        assert len(placement.jobs.finished) == 1
