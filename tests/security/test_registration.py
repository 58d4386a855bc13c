"""Agents registering with a proxy they were pointed at: signed, fresh, once; strangers refused."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from olol.backends.ollama.backend import OllamaBackend
from olol.discovery.advert import REGISTRATION, Advert
from olol.discovery.proxy_side import DISCOVERY
from olol.discovery.settings import DiscoverySettings
from olol.security.settings import SecuritySettings
from olol.security.signing import new_nonce
from tests.proxy.helpers import proxy_over
from tests.security.conftest import TOKEN, WRONG_TOKEN

REGISTRATIONS_ONLY = DiscoverySettings(enabled=True, mdns=False, register_interval=0.5)


def _registration(port: int, token: str | None, **extra: str) -> dict[str, str]:
    fields = {"op": "join", "ts": f"{time.time():.3f}", "nonce": new_nonce(), "ttl": "30", **extra}
    advert = Advert("agent", f"test:{port}", port, ("127.0.0.1",), extra=fields)
    return advert.signed(token, REGISTRATION)


async def _until(check, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_agent_registers_with_the_proxy_and_leaves_on_stop(agent_factory, ollama_sim) -> None:  # type: ignore[no-untyped-def]
    security = SecuritySettings(token=TOKEN)
    async with proxy_over(security=security, discovery=REGISTRATIONS_ONLY) as proxy:
        agent = await agent_factory(
            OllamaBackend(ollama_sim.url),
            security=security,
            discovery=DiscoverySettings(proxies=[f"127.0.0.1:{proxy.port}"], register_interval=0.5),
        )
        hosts = proxy.context.cluster.hosts
        await _until(lambda: agent.target in hosts and hosts[agent.target].healthy)
        assert proxy.runner.app[DISCOVERY].membership.origins[agent.target] == "register"
        async with (
            aiohttp.ClientSession() as http,
            http.post(proxy.url + "/api/generate", json={"model": "llama3.2", "prompt": "hi", "stream": False}) as resp,
        ):
            assert resp.status == 200
        await agent.stop()  # signed "leave": the proxy drops it at once, no waiting for a lease
        await _until(lambda: agent.target not in hosts)


async def test_strangers_and_replays_are_refused(ollama_sim) -> None:  # type: ignore[no-untyped-def]
    async with proxy_over(security=SecuritySettings(token=TOKEN), discovery=REGISTRATIONS_ONLY) as proxy:
        url = proxy.url + "/olol/register"
        hosts = proxy.context.cluster.hosts
        async with aiohttp.ClientSession() as http:
            for body in (_registration(50999, None), _registration(50999, WRONG_TOKEN)):
                async with http.post(url, json=body) as resp:
                    assert resp.status == 401
            stale = _registration(50999, TOKEN, ts=f"{time.time() - 3600:.3f}")
            async with http.post(url, json=stale) as resp:
                assert resp.status == 401 and "stale" in (await resp.json())["error"]
            tampered = {**_registration(50999, TOKEN), "addrs": "10.6.6.6"}  # redirect a member's registration
            async with http.post(url, json=tampered) as resp:
                assert resp.status == 401
            for junk in (b"[]", b"{", b'{"a": 1}'):
                async with http.post(url, data=junk) as resp:
                    assert resp.status == 400
            good = _registration(50999, TOKEN)
            async with http.post(url, json=good) as resp:
                assert resp.status == 200 and (await resp.json())["host"] == "127.0.0.1:50999"
            async with http.post(url, json=good) as resp:  # the same message again: a replay
                assert resp.status == 401 and "replayed" in (await resp.json())["error"]
        assert "127.0.0.1:50999" in hosts
        assert not hosts["127.0.0.1:50999"].healthy  # nothing listens there: joined, but down


async def test_registration_is_not_served_when_discovery_is_off(ollama_sim) -> None:  # type: ignore[no-untyped-def]
    async with (
        proxy_over(ollama_sim, security=SecuritySettings(token=TOKEN)) as proxy,
        aiohttp.ClientSession() as http,
        http.post(proxy.url + "/olol/register", json=_registration(50999, TOKEN)) as resp,
    ):
        assert resp.status in (404, 405)
