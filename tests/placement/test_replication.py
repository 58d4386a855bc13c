"""Replication: N hosts, one registry download, LAN copies for the rest, failures reported not hidden."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from tests.placement.models_dir import gguf_bytes, write_ollama_model
from tests.proxy.helpers import ndjson, proxy_over
from tests.support.ollama_sim import ModelSpec

MODEL = "tiny-chat:latest"


async def _pull(url: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.post(url + "/api/pull", json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await ndjson(resp)


async def test_three_replicas_cost_one_download(nodes, registry) -> None:  # type: ignore[no-untyped-def]
    hosts = await nodes(3, registry=registry)
    async with proxy_over(*(h.target for h in hosts)) as proxy:
        lines = await _pull(proxy.url, {"model": MODEL, "replicas": 3})
        final = lines[-1]
        assert final["status"] == "success", final
        via = final["olol"]["via"]
        assert sorted(via.values()).count("registry") == 1
        seed = next(h for h, v in via.items() if v == "registry")
        assert all(v == f"copy from {seed}" for h, v in via.items() if h != seed)
        # The registry served the model once for the whole cluster (4 MiB of weights plus a few small layers).
        assert 4 * 1024 * 1024 <= registry.bytes_served < 4.1 * 1024 * 1024
        assert sorted(final["olol"]["hosts"]) == sorted(h.target for h in hosts)
        # Every layer line says which host it is about and how far that host is.
        per_host = [line["olol"] for line in lines if "digest" in line]
        assert {p["host"] for p in per_host} == {h.target for h in hosts}
        assert all(p["completed"] <= p["total"] for p in per_host)
        async with aiohttp.ClientSession() as http, http.get(proxy.url + "/api/tags") as r:
            where = {m["name"]: m["olol"]["hosts"] for m in (await r.json())["models"]}
        assert sorted(where[MODEL]) == sorted(h.target for h in hosts)
    for host in hosts:
        assert (host.models_dir / "manifests/registry.ollama.ai/library/tiny-chat/latest").exists()


async def test_offline_cluster_copies_from_the_host_that_has_it(nodes, tmp_path) -> None:  # type: ignore[no-untyped-def]
    hosts = await nodes(3, registry=None)  # no internet: every registry pull fails
    laid = write_ollama_model(hosts[0].models_dir, MODEL, gguf_bytes(2 * 1024 * 1024, seed=3))
    hosts[0].sim.add_model(ModelSpec(MODEL))
    async with proxy_over(*(h.target for h in hosts)) as proxy:
        lines = await _pull(proxy.url, {"model": MODEL, "replicas": 3})
        assert lines[-1]["status"] == "success", lines[-1]
        notes = [line["status"] for line in lines if "note" in line.get("olol", {})]
        assert any("keeping its copy" in n for n in notes)
        assert sorted(lines[-1]["olol"]["hosts"]) == sorted(h.target for h in hosts)
    for host in hosts[1:]:
        blob = host.models_dir / "blobs" / laid.weights_digest.replace(":", "-")
        assert blob.read_bytes() == laid.weights


async def test_a_host_dying_mid_copy_is_reported_and_the_others_finish(nodes, registry) -> None:  # type: ignore[no-untyped-def]
    # Sources send at 4 MB/s, so copies of the 4 MiB model are still running when one host dies.
    hosts = await nodes(3, registry=registry, transfer_rate=4e6)
    async with proxy_over(*(h.target for h in hosts)) as proxy, aiohttp.ClientSession() as http:
        killed: str | None = None
        lines = []
        async with http.post(proxy.url + "/api/pull", json={"model": MODEL, "replicas": 3}) as resp:
            async for raw in resp.content:
                line = json.loads(raw)
                lines.append(line)
                olol = line.get("olol", {})
                if killed is None and "copy from" in olol.get("via", "") and olol.get("completed", 0) > 0:
                    killed = olol["host"]
                    victim = next(h for h in hosts if h.target == killed)
                    asyncio.get_running_loop().create_task(victim.stop_agent(kill=True))
        final = lines[-1]
        assert killed is not None
        assert final["status"] == "success", final
        assert killed in final["olol"]["failed"]
        assert len(final["olol"]["hosts"]) == 2 and killed not in final["olol"]["hosts"]
        failure = next(line for line in lines if line.get("olol", {}).get("error"))
        assert failure["olol"]["host"] == killed and "error" not in failure  # a status line, not a feed-ending error


async def test_plain_ollama_hosts_one_dies_mid_pull(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    sims = await ollama_sim_factory.many(3, pull_delay=0.02)
    new = "qwen2.5:0.5b"
    urls = [s.url for s in sims]
    async with proxy_over(*sims) as proxy, aiohttp.ClientSession() as http:
        lines = []
        stopped = False
        async with http.post(proxy.url + "/api/pull", json={"model": new, "replicas": 3}) as resp:
            async for raw in resp.content:
                line = json.loads(raw)
                lines.append(line)
                if not stopped and line.get("olol", {}).get("host") == urls[2] and "digest" in line:
                    stopped = True
                    asyncio.get_running_loop().create_task(sims[2].stop())
        final = lines[-1]
        assert final["status"] == "success"
        assert sorted(final["olol"]["hosts"]) == sorted(urls[:2])
        assert "closed the stream" in final["olol"]["failed"][urls[2]]


async def test_a_plain_ollama_host_gets_a_copy_relayed_by_the_proxy(nodes, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.placement.disk_sim import DiskOllamaSim

    (agent_host,) = await nodes(1, registry=None)
    laid = write_ollama_model(agent_host.models_dir, MODEL, gguf_bytes(1024 * 1024, seed=8), system="Be brief.")
    agent_host.sim.add_model(ModelSpec(MODEL))
    plain = await DiskOllamaSim(tmp_path / "plain-models").start()  # no agent in front, no internet
    try:
        async with proxy_over(agent_host.target, plain.url, transfer_dir=str(tmp_path / "relay")) as proxy:
            final = (await _pull(proxy.url, {"model": MODEL, "replicas": 2}))[-1]
            assert final["status"] == "success", final
            assert final["olol"]["via"][plain.url] == f"copy from {agent_host.target}"
        blob = tmp_path / "plain-models" / "blobs" / laid.weights_digest.replace(":", "-")
        assert blob.read_bytes() == laid.weights
        assert plain.models[MODEL].system == "Be brief." and plain.requests["/api/pull"] == 0
    finally:
        await plain.stop()


async def test_without_lan_copies_every_host_downloads(nodes, registry) -> None:  # type: ignore[no-untyped-def]
    hosts = await nodes(2, registry=registry)
    async with proxy_over(*(h.target for h in hosts), lan_copy=False) as proxy:
        final = (await _pull(proxy.url, {"model": MODEL, "replicas": 2}))[-1]
    assert list(final["olol"]["via"].values()) == ["registry", "registry"]
    assert registry.bytes_served >= 2 * 4 * 1024 * 1024
