"""Strangers on the LAN: their adverts are ignored, scans do not trust them, registrations need the token.

A stranger here is an `olol server` with a wrong token or none, advertising
`_olol._tcp` like a member: the proxy must neither add it nor dial it with
the cluster token.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from olol.discovery.proxy_side import DISCOVERY
from olol.discovery.settings import DiscoverySettings
from olol.proxy import ProxyConfig, start_proxy
from olol.security.settings import SecuritySettings
from tests.netns.conftest import TOKEN, start_agent_in, wait_for
from tests.netns.lan import Lan
from tests.netns.test_multihost import discovering_proxy, healthy

pytestmark = pytest.mark.timeout(180)


async def test_stranger_adverts_are_ignored_and_logged(lan: Lan, caplog: pytest.LogCaptureFixture) -> None:
    member, wrong, open_ = lan.add_host("m"), lan.add_host("w"), lan.add_host("o")
    targets = await asyncio.gather(
        start_agent_in(lan, member, "--discovery"),
        start_agent_in(lan, wrong, "--discovery", token="a-stranger-token-0123456789abcdef"),
        start_agent_in(lan, open_, "--discovery", token=None),
    )
    with caplog.at_level(logging.WARNING, logger="olol.discovery"):
        async with discovering_proxy(lan) as proxy:
            browser = proxy.runner.app[DISCOVERY].browser
            assert browser is not None
            await wait_for(lambda: healthy(proxy) == {targets[0]} and len(browser.ignored) == 2, timeout=20)
            await asyncio.sleep(2.0)  # and they stay out
            assert set(proxy.context.cluster.hosts) == {targets[0]}
            reasons = sorted(browser.ignored.values())
    assert reasons == ["bad signature (wrong or no cluster token)", "unsigned"]
    assert caplog.text.count("ignoring mDNS advert") == 2


async def test_subnet_scan_finds_members_by_proof_and_never_trusts_strangers(lan: Lan) -> None:
    members = [lan.add_host("m1"), lan.add_host("m2")]
    wrong, open_ = lan.add_host("w"), lan.add_host("o")
    targets = await asyncio.gather(*(start_agent_in(lan, h) for h in members))  # no mDNS: found by the scan
    await asyncio.gather(
        start_agent_in(lan, wrong, token="a-stranger-token-0123456789abcdef"), start_agent_in(lan, open_, token=None)
    )
    config = ProxyConfig(
        host="127.0.0.1",
        port=0,
        servers=[],
        probe_interval=1.0,
        security=SecuritySettings(token=TOKEN),
        discovery=DiscoverySettings(scan_subnet=True, interface=lan.root_if, scan_rate=200.0),
    )
    proxy = await start_proxy(config)
    try:
        scanner = proxy.runner.app[DISCOVERY].scanner
        assert scanner is not None and str(scanner.network) == f"{lan.subnet}.0/24"
        await wait_for(lambda: healthy(proxy) == set(targets), timeout=30)
        await wait_for(lambda: scanner.attempts >= 253, timeout=30)  # the whole /24, ourselves excluded
        await asyncio.sleep(1.0)
        assert set(proxy.context.cluster.hosts) == set(targets)
    finally:
        await proxy.stop()


async def test_registration_across_the_lan_needs_the_token(lan: Lan) -> None:
    member, stranger = lan.add_host("m"), lan.add_host("s")
    config = ProxyConfig(
        host=lan.root_address,
        port=0,
        servers=[],
        probe_interval=1.0,
        security=SecuritySettings(token=TOKEN),
        discovery=DiscoverySettings(enabled=True, mdns=False, register_interval=1.0),
    )
    proxy = await start_proxy(config)
    try:
        where = f"{lan.root_address}:{proxy.port}"
        target = await start_agent_in(lan, member, "--proxy", where)
        await start_agent_in(lan, stranger, "--proxy", where, token="a-stranger-token-0123456789abcdef")
        await wait_for(lambda: healthy(proxy) == {target}, timeout=20)
        await asyncio.sleep(2.5)  # the stranger keeps trying; it stays out
        assert set(proxy.context.cluster.hosts) == {target}
        async with (
            aiohttp.ClientSession() as http,
            http.post(proxy.url + "/api/generate", json={"model": "llama3.2", "prompt": "hi", "stream": False}) as resp,
        ):
            assert resp.status == 200
    finally:
        await proxy.stop()
