"""rpc-servers on a simulated LAN: they advertise (role "rpc", signed), proxies keep them apart from
agents, a coordinator (`olol dist --discovery`) finds them, and a stranger's worker is ignored.

Each `olol rpc-server` runs in its own namespace with its ggml worker, as on
its own machine; nothing is given an address.
"""

from __future__ import annotations

import asyncio
import sys

import aiohttp
import pytest
from typer.testing import CliRunner

from olol.backends.llamacpp.bins import LlamaBinaries
from olol.cli import app
from olol.discovery.proxy_side import DISCOVERY
from olol.discovery.rpc_finder import find_rpc_servers
from olol.discovery.settings import DiscoverySettings
from tests.netns.conftest import TOKEN, start_agent_in, wait_for
from tests.netns.lan import Lan, NetHost
from tests.netns.test_multihost import discovering_proxy, healthy

pytestmark = pytest.mark.timeout(180)

RPC_PORT = 50052
STRANGER_TOKEN = "a-stranger-token-0123456789abcdef"


async def start_rpc_in(lan: Lan, host: NetHost, bins: LlamaBinaries, token: str | None = TOKEN) -> str:
    """`olol rpc-server --discovery` (and its ggml worker) in the host's namespace; returns its host:port."""
    argv = [
        sys.executable, "-m", "olol", "rpc-server",
        "--host", "0.0.0.0", "--port", str(RPC_PORT),
        "--rpc-bin", str(bins.rpc_server), "--device", "cpu", "--threads", "1", "--no-speed-test",
        "--discovery", "--interface", "eth0",
    ]  # fmt: skip
    if token:
        argv += ["--token", token]
    await lan.spawn(host, *argv)
    return f"{host.address}:{RPC_PORT}"


async def stop_host(host: NetHost, crash: bool = False) -> None:
    """SIGTERM, as an operator would (the rpc-server says goodbye on mDNS before it goes), or SIGKILL,
    as a crash would (no goodbye: only the proxy's liveness probe can drop it)."""
    for proc in host.processes:
        proc.kill() if crash else proc.terminate()
    for proc in host.processes:
        await proc.wait()
    host.processes.clear()


async def test_rpc_servers_are_found_apart_from_agents(lan: Lan, llama_bins: LlamaBinaries) -> None:
    agent_host, r1, r2, stranger = lan.add_host("a"), lan.add_host("r1"), lan.add_host("r2"), lan.add_host("s")
    agent, w1, w2, _ = await asyncio.gather(
        start_agent_in(lan, agent_host, "--discovery"),
        start_rpc_in(lan, r1, llama_bins),
        start_rpc_in(lan, r2, llama_bins),
        start_rpc_in(lan, stranger, llama_bins, token=STRANGER_TOKEN),
    )
    # Probes every second: a crashed worker is dropped after two missed probes.
    fast = DiscoverySettings(enabled=True, interface=lan.root_if, register_interval=1.0)
    async with discovering_proxy(lan, discovery=fast) as proxy:
        discovery = proxy.runner.app[DISCOVERY]
        browser = discovery.browser
        assert browser is not None
        await wait_for(
            lambda: healthy(proxy) == {agent}
            and discovery.rpc_targets() == sorted([w1, w2])
            and len(browser.ignored) == 1,
            timeout=30,
        )
        # Workers never become inference hosts: nothing is routed to a ggml worker.
        assert set(proxy.context.cluster.hosts) == {agent}
        assert {a.role for a in discovery.rpc_servers.values()} == {"rpc"}
        assert list(browser.ignored.values()) == ["bad signature (wrong or no cluster token)"]
        async with aiohttp.ClientSession() as http, http.get(proxy.url + "/api/status") as resp:
            shown = await resp.json()
        assert shown["rpc_servers"] == sorted([w1, w2]) and [h["id"] for h in shown["hosts"]] == [agent]

        # A coordinator finds the same two, and neither the agent nor the stranger.
        settings = DiscoverySettings(enabled=True, interface=lan.root_if)
        assert await find_rpc_servers(settings, TOKEN, wait=15, want=2) == sorted([w1, w2])

        await stop_host(r1)  # its mDNS goodbye drops it at once
        await wait_for(lambda: discovery.rpc_targets() == [w2], timeout=10)
        assert set(proxy.context.cluster.hosts) == {agent}

        await stop_host(r2, crash=True)  # no goodbye: two missed probes drop it
        await wait_for(lambda: discovery.rpc_targets() == [], timeout=10)
        assert set(proxy.context.cluster.hosts) == {agent}


async def test_dist_discovery_plans_over_the_advertised_rpc_servers(
    lan: Lan, llama_bins: LlamaBinaries, tiny_model: object
) -> None:
    hosts = [lan.add_host("r1"), lan.add_host("r2")]
    targets = await asyncio.gather(*(start_rpc_in(lan, h, llama_bins) for h in hosts))
    args = [
        "dist", "--discovery", "--interface", lan.root_if, "--discovery-wait", "5",
        "--token", TOKEN, "--model", str(tiny_model), "--plan-only",
    ]  # fmt: skip
    result = await asyncio.to_thread(CliRunner(env={"COLUMNS": "200"}).invoke, app, args)
    assert result.exit_code == 0, result.output
    assert all(t in result.output for t in targets), result.output
    # Nobody of this cluster advertising: a clear error, not a plan over nothing.
    lonely = [*args[:6], "--token", STRANGER_TOKEN, *args[8:]]
    result = await asyncio.to_thread(CliRunner().invoke, app, lonely)
    assert result.exit_code == 2 and "no rpc-server of cluster 'olol'" in result.output, result.output
