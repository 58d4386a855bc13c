"""A model split across hosts on a simulated LAN (network namespaces), tunnelled, as across real machines.

Two `olol rpc-server`s run in namespaces of their own (each ggml worker on its
host's loopback, unreachable from the LAN), the coordinator (`olol dist`, then
`olol proxy --distributed`) in a third, and the test process joins the LAN as a
client. Greedy output must equal one llama-server's on one host. Skipped, with
the reason, where namespaces cannot be made (not root, no `ip`).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from olol.backends.llamacpp.bins import LlamaBinaries
from tests.netns.conftest import TOKEN
from tests.netns.lan import Lan, NetHost, netns_unavailable
from tests.split.conftest import N_PREDICT, PROMPT, complete

_why = netns_unavailable()
# Skipped up front, so a machine without namespaces does not build llama.cpp first for nothing.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240), pytest.mark.skipif(bool(_why), reason=_why or "")]

RPC_PORT = 50052
HTTP_PORT = 8080


@pytest.fixture
def baseline(llama_server: Any) -> str:
    """The single-host answer (llama-server on this host, no RPC) every split must reproduce."""
    return asyncio.run(complete(llama_server.url))


async def start_rpc_server(lan: Lan, host: NetHost, bins: LlamaBinaries, cache: Path) -> int:
    """`olol rpc-server` in the host's namespace; returns its ggml worker's port (on the host's loopback)."""
    ready = await lan.spawn(
        host, sys.executable, "-m", "olol", "rpc-server", "--host", "0.0.0.0", "--port", str(RPC_PORT),
        "--rpc-bin", str(bins.rpc_server), "--threads", "1", "--no-speed-test", "--cache-dir", str(cache),
        "--token", TOKEN, timeout=60,
    )  # fmt: skip
    worker = ready.split("worker=")[1].split()[0]
    assert worker.startswith("127.0.0.1:"), ready  # the unauthenticated ggml worker stays on loopback
    return int(worker.rsplit(":", 1)[1])


async def workers(lan: Lan, bins: LlamaBinaries, tmp_path: Path) -> tuple[NetHost, list[NetHost], list[int]]:
    coordinator = lan.add_host("c")
    hosts = [lan.add_host(f"w{i}") for i in (1, 2)]
    ports = list(await asyncio.gather(*(start_rpc_server(lan, h, bins, tmp_path / h.name) for h in hosts)))
    return coordinator, hosts, ports


async def refused(address: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), 5)
    except (ConnectionError, OSError):
        return True
    writer.close()
    return False


def servers_arg(hosts: list[NetHost]) -> str:
    return ",".join(f"{h.address}:{RPC_PORT}" for h in hosts)


async def test_olol_dist_across_namespaces_equals_one_host(
    lan: Lan, llama_bins: LlamaBinaries, tiny_model: Path, baseline: str, tmp_path: Path
) -> None:
    coordinator, hosts, worker_ports = await workers(lan, llama_bins, tmp_path)
    # From the LAN only the authenticated gRPC port answers; the ggml workers cannot be reached.
    for host, port in zip(hosts, worker_ports, strict=True):
        assert await refused(host.address, port)
    await lan.spawn(
        coordinator, sys.executable, "-m", "olol", "dist", "--servers", servers_arg(hosts),
        "--model", str(tiny_model), "--host", "0.0.0.0", "--port", str(HTTP_PORT), "--ctx-size", "512",
        "--threads", "1", "--parallel", "1", "--llama-server-bin", str(llama_bins.llama_server), "--token", TOKEN,
        "--objective", "balanced", timeout=120,  # equal workers: "latency" would put the tiny model on one
    )  # fmt: skip
    front = f"http://{coordinator.address}:{HTTP_PORT}"
    assert await complete(front) == baseline
    async with aiohttp.ClientSession() as http, http.get(front + "/olol/status") as r:
        status = await r.json()
    assert status["transport"] == "tunnel" and status["plan"]["tensor_split"] == [4, 1]
    assert status["plan"]["objective"] == "balanced"
    assert status["plan"]["rpc_servers"] == [f"{h.address}:{RPC_PORT}" for h in hosts]
    assert all(t["bytes_up"] > 0 and t["failures"] == 0 for t in status["tunnels"].values())
    assert all(t["data_path"] == "stream" for t in status["tunnels"].values())  # the data ports were reachable


async def test_proxy_distributed_across_namespaces_equals_one_host(
    lan: Lan, llama_bins: LlamaBinaries, tiny_model: Path, baseline: str, tmp_path: Path
) -> None:
    coordinator, hosts, _ = await workers(lan, llama_bins, tmp_path)
    await lan.spawn(
        coordinator, sys.executable, "-m", "olol", "proxy", "--host", "0.0.0.0", "--port", str(HTTP_PORT),
        "--distributed", "--rpc-servers", servers_arg(hosts), "--dist-model", f"tiny={tiny_model}",
        "--dist-ctx-size", "512", "--dist-parallel", "1", "--llama-server-bin", str(llama_bins.llama_server),
        "--dist-objective", "balanced", "--token", TOKEN, timeout=120,  # as above: a split, not one worker
    )  # fmt: skip
    proxy = f"http://{coordinator.address}:{HTTP_PORT}"
    body = {"model": "tiny", "prompt": PROMPT, "raw": True, "stream": False,
            "options": {"temperature": 0, "num_predict": N_PREDICT, "distributed": True}}  # fmt: skip
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
        async with http.post(proxy + "/api/generate", json=body) as r:
            assert r.status == 200, await r.text()
            assert r.headers["X-OLOL-Host"] == "dist:tiny:latest"
            assert (await r.json())["response"] == baseline
        async with http.get(proxy + "/api/tags") as r:
            assert [m["name"] for m in (await r.json())["models"]] == ["tiny:latest"]
        async with http.get(proxy + "/api/distributed") as r:
            active = (await r.json())["active"]
    assert active["transport"] == "tunnel" and active["plan"]["tensor_split"] == [4, 1]
    assert active["plan"]["objective"] == "balanced"
