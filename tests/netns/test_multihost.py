"""Several hosts on a simulated LAN (network namespaces): discovery, a cut cable, rejoining, latency.

Each agent and its simulated Ollama run in their own namespace, as on their
own machine; the proxy runs in the test process, on the LAN through a veth.
No address is given to anyone: the agents advertise over mDNS with the
cluster token, the proxy finds them.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest

from olol.discovery.settings import DiscoverySettings
from olol.proxy import ProxyConfig, RunningProxy, start_proxy
from olol.security.settings import SecuritySettings
from tests.netns.conftest import TOKEN, start_agent_in, wait_for
from tests.netns.lan import Lan

pytestmark = pytest.mark.timeout(180)


@asynccontextmanager
async def discovering_proxy(lan: Lan, **settings: object) -> AsyncIterator[RunningProxy]:
    values: dict[str, object] = {
        "probe_interval": 1.0,
        "balancer": "round_robin",
        "affinity": False,
        "security": SecuritySettings(token=TOKEN),
        "discovery": DiscoverySettings(enabled=True, interface=lan.root_if),
        **settings,
    }
    config = ProxyConfig(host="127.0.0.1", port=0, servers=[], **values)  # type: ignore[arg-type]
    proxy = await start_proxy(config)
    try:
        yield proxy
    finally:
        await proxy.stop()


def healthy(proxy: RunningProxy) -> set[str]:
    return {h.id for h in proxy.context.cluster.healthy_hosts()}


async def generate(http: aiohttp.ClientSession, proxy: RunningProxy, prompt: str = "hi") -> str:
    async with http.post(
        proxy.url + "/api/generate", json={"model": "llama3.2", "prompt": prompt, "stream": False}
    ) as resp:
        assert resp.status == 200, await resp.text()
        await resp.read()
        return resp.headers["X-OLOL-Host"]


async def test_discovery_assembles_a_proxy_and_three_agents(lan: Lan) -> None:
    hosts = [lan.add_host(f"a{i}") for i in range(3)]
    targets = await asyncio.gather(*(start_agent_in(lan, h, "--discovery") for h in hosts))
    async with discovering_proxy(lan) as proxy, aiohttp.ClientSession() as http:
        took = await wait_for(lambda: healthy(proxy) == set(targets), timeout=20)
        served = Counter([await generate(http, proxy, str(i)) for i in range(9)])
        assert set(served) == set(targets)
    print(f"\n3 agents discovered in {took:.2f}s")


async def test_a_cut_host_is_dead_within_3s_its_work_goes_elsewhere_and_it_rejoins(lan: Lan) -> None:
    hosts = [lan.add_host(f"a{i}") for i in range(3)]
    targets = await asyncio.gather(*(start_agent_in(lan, h, "--discovery") for h in hosts))
    victim, victim_target = hosts[0], targets[0]
    async with discovering_proxy(lan) as proxy, aiohttp.ClientSession() as http:
        await wait_for(lambda: healthy(proxy) == set(targets), timeout=20)
        host = proxy.context.cluster.hosts[victim_target]
        await asyncio.sleep(1.5)  # steady state: the state feeds are flowing
        cut_at = time.monotonic()
        lan.cut(victim)
        await wait_for(lambda: not host.healthy, timeout=10, interval=0.02)
        dead_after = time.monotonic() - cut_at
        assert dead_after <= 3.0, f"marked dead after {dead_after:.2f}s"
        served = Counter([await generate(http, proxy, str(i)) for i in range(6)])
        assert victim_target not in served and sum(served.values()) == 6
        lan.reconnect(victim)
        back_at = time.monotonic()
        await wait_for(lambda: host.healthy, timeout=20, interval=0.05)
        rejoined_after = time.monotonic() - back_at
        served = Counter([await generate(http, proxy, str(i)) for i in range(9)])
        assert victim_target in served
    print(f"\ncut host marked dead after {dead_after:.2f}s, rejoined {rejoined_after:.2f}s after reconnect")


async def test_requests_in_flight_on_a_cut_host_end_instead_of_hanging(lan: Lan) -> None:
    hosts = [lan.add_host(f"a{i}") for i in range(2)]
    targets = await asyncio.gather(*(start_agent_in(lan, h, "--discovery", token_rate=20) for h in hosts))
    async with discovering_proxy(lan) as proxy, aiohttp.ClientSession() as http:
        await wait_for(lambda: healthy(proxy) == set(targets), timeout=20)
        await wait_for(lambda: all(h.has_model("llama3.2") for h in proxy.context.cluster.hosts.values()))

        async def stream() -> tuple[str, str]:
            body = {"model": "llama3.2", "prompt": "long", "options": {"num_predict": 80}}  # 4 s at 20 tokens/s
            async with http.post(proxy.url + "/api/generate", json=body) as resp:
                text = (await resp.read()).decode()
                return resp.headers.get("X-OLOL-Host", f"status {resp.status}"), text.splitlines()[-1]

        tasks = [asyncio.create_task(stream()) for _ in range(2)]
        await asyncio.sleep(1.0)
        lan.cut(hosts[0])
        start = time.monotonic()
        results = await asyncio.wait_for(asyncio.gather(*tasks), timeout=20)
        ended = time.monotonic() - start
        assert sorted(where for where, _ in results) == sorted(targets)  # one on each host
        for where, last in results:
            if where == targets[0]:
                # cut mid-stream: no hang, and (issue 15) the answer is finished on the other host
                assert '"done":true' in last and '"resumes":1' in last and targets[1] in last
            else:
                assert '"done":true' in last
    print(f"\nstreams on the cut host ended {ended:.2f}s after the cut")


async def test_added_latency_is_reflected_in_routing(lan: Lan) -> None:
    """150 ms each way on one host: the adaptive policy sends most work to the other.

    With tc netem the delay is on the host's interface; kernels without sch_netem
    get the same delay from a relay in the host's namespace that the proxy dials.
    """
    hosts = [lan.add_host(f"a{i}") for i in range(2)]
    targets = list(await asyncio.gather(*(start_agent_in(lan, h) for h in hosts)))
    if Lan.netem_available():
        lan.delay(hosts[0], 150)
    else:
        await lan.spawn(
            hosts[0],
            sys.executable,
            "-m",
            "tests.netns.delay_relay",
            "--listen",
            "0.0.0.0:50052",
            "--to",
            "127.0.0.1:50051",
            "--delay-ms",
            "150",
        )
        targets[0] = f"{hosts[0].address}:50052"
    config = ProxyConfig(
        host="127.0.0.1",
        port=0,
        servers=targets,
        balancer="adaptive",
        affinity=False,
        probe_interval=1.0,
        security=SecuritySettings(token=TOKEN),
    )
    proxy = await start_proxy(config)
    try:
        async with aiohttp.ClientSession() as http:
            await wait_for(lambda: healthy(proxy) == set(targets), timeout=20)
            for i in range(6):  # both hosts get measured
                await generate(http, proxy, f"warm {i}")
            served = Counter([await generate(http, proxy, str(i)) for i in range(20)])
    finally:
        await proxy.stop()
    assert served[targets[1]] >= 16, served
    print(f"\nwith 150 ms added on one host, the other served {served[targets[1]]}/20")
