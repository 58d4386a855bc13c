"""rpc-servers registering with a proxy they were pointed at (`olol rpc-server --proxy`): signed like an
agent's registration, listed apart from inference hosts, leased, withdrawn on stop; strangers refused."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import sys
import time
from typing import Any

import aiohttp
import pytest

from olol.backends.llamacpp.bins import LlamaBinaries
from olol.discovery.advert import REGISTRATION, Advert
from olol.discovery.proxy_side import DISCOVERY
from olol.discovery.rpc_roster import RpcRoster
from olol.discovery.settings import DiscoverySettings
from olol.security.settings import SecuritySettings
from olol.security.signing import new_nonce
from olol.split.settings import DistributedSettings
from tests.proxy.helpers import proxy_over
from tests.security.conftest import TOKEN, WRONG_TOKEN

REGISTRATIONS_ONLY = DiscoverySettings(enabled=True, mdns=False, register_interval=0.5)


def _rpc_registration(port: int, token: str | None, op: str = "join", ttl: str = "30") -> dict[str, str]:
    fields = {"op": op, "ts": f"{time.time():.3f}", "nonce": new_nonce(), "ttl": ttl}
    return Advert("rpc", f"worker:{port}", port, ("127.0.0.1",), extra=fields).signed(token, REGISTRATION)


async def _status(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(url + "/api/status") as resp:
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body


async def _until(check, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def test_registered_rpc_servers_lapse_unless_renewed() -> None:
    roster = RpcRoster()
    advert = Advert("rpc", "w", 50052, ("10.0.0.5",))
    now = time.monotonic()
    assert roster.seen("mdns-name", advert, "10.0.0.5:50052", "mdns")
    assert not roster.seen(roster.registered_key("10.0.0.5:50052"), advert, "10.0.0.5:50052", "register", lease=30)
    assert roster.seen(roster.registered_key("10.0.0.6:50052"), advert, "10.0.0.6:50052", "register", lease=30)
    assert roster.targets() == ["10.0.0.5:50052", "10.0.0.6:50052"]
    assert roster.expire(now + 10) == []  # within the lease
    lapsed = roster.expire(now + 31)
    assert sorted(lapsed) == [roster.registered_key("10.0.0.5:50052"), roster.registered_key("10.0.0.6:50052")]
    # The mDNS advert of the first is no lease: it stays until its goodbye.
    assert roster.targets() == ["10.0.0.5:50052"]
    assert roster.forget("mdns-name", "goodbye") and roster.targets() == []


async def test_rpc_registrations_are_listed_apart_and_strangers_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="olol.discovery")
    async with proxy_over(security=SecuritySettings(token=TOKEN), discovery=REGISTRATIONS_ONLY) as proxy:
        discovery = proxy.runner.app[DISCOVERY]
        url = proxy.url + "/olol/register"
        async with aiohttp.ClientSession() as http:
            for body in (_rpc_registration(50998, None), _rpc_registration(50998, WRONG_TOKEN)):
                async with http.post(url, json=body) as resp:
                    assert resp.status == 401
            assert discovery.rpc_targets() == []
            assert any("refused registration" in r.getMessage() for r in caplog.records)  # logged, for operators
            async with http.post(url, json=_rpc_registration(50998, TOKEN)) as resp:
                assert resp.status == 200
                assert await resp.json() == {"status": "joined", "host": "127.0.0.1:50998", "role": "rpc"}
            async with http.post(url, json=_rpc_registration(50998, TOKEN)) as resp:  # renewal: a fresh nonce
                assert resp.status == 200 and (await resp.json())["status"] == "renewed"
            status = await _status(http, proxy.url)
            assert status["rpc_servers"] == ["127.0.0.1:50998"] and status["hosts"] == []
            assert "127.0.0.1:50998" not in proxy.context.cluster.hosts  # never an inference host
            # The lease lapses like an agent's registration (checked at a later clock, not by waiting).
            assert discovery.rpc.expire(time.monotonic() + 31) == ["register:127.0.0.1:50998"]
            assert discovery.rpc_targets() == []
            async with http.post(url, json=_rpc_registration(50998, TOKEN)) as resp:
                assert resp.status == 200 and (await resp.json())["status"] == "joined"
            async with http.post(url, json=_rpc_registration(50998, TOKEN, op="leave")) as resp:
                assert resp.status == 200 and (await resp.json())["status"] == "left"
            assert discovery.rpc_targets() == []


async def _rpc_server(bins: LlamaBinaries, proxy_port: int, token: str) -> tuple[asyncio.subprocess.Process, str]:
    """`olol rpc-server --proxy` (and its ggml worker) on loopback; returns it and its host:port once READY."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "olol", "rpc-server", "--host", "127.0.0.1", "--port", "0",
        "--rpc-bin", str(bins.rpc_server), "--device", "cpu", "--threads", "1", "--no-speed-test",
        "--token", token, "--proxy", f"127.0.0.1:{proxy_port}", "--log-level", "warning",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        m = re.match(r"READY (127\.0\.0\.1:\d+) ", line)
        assert m, line
    except BaseException:
        await _stop(proc)
        raise
    return proc, m[1]


async def _stop(proc: asyncio.subprocess.Process) -> int:
    """SIGTERM, as an operator would: the rpc-server withdraws its registration before it goes."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(proc.wait(), 30)
    except TimeoutError:
        proc.kill()
        return await proc.wait()


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_rpc_server_registers_with_the_proxy_and_leaves_on_stop(
    llama_bins: LlamaBinaries, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="olol.discovery")
    security = SecuritySettings(token=TOKEN)
    distributed = DistributedSettings(enabled=True)  # plans over discovered rpc-servers; no model to split
    async with (
        proxy_over(security=security, discovery=REGISTRATIONS_ONLY, distributed=distributed) as proxy,
        aiohttp.ClientSession() as http,
    ):
        discovery = proxy.runner.app[DISCOVERY]
        stranger, stranger_target = await _rpc_server(llama_bins, proxy.port, WRONG_TOKEN)
        try:
            await _until(lambda: any("refused registration" in r.getMessage() for r in caplog.records))
            assert stranger_target not in discovery.rpc_targets()
        finally:
            assert await _stop(stranger) == 0

        proc, target = await _rpc_server(llama_bins, proxy.port, TOKEN)
        try:
            await _until(lambda: target in discovery.rpc_targets())
            assert discovery.rpc.origins[discovery.rpc.registered_key(target)] == "register"
            status = await _status(http, proxy.url)
            assert status["rpc_servers"] == [target]
            assert status["hosts"] == [] and target not in proxy.context.cluster.hosts
            assert status["distributed"]["rpc_servers"] == [target]  # what a split would be planned over
        finally:
            code = await _stop(proc)
        assert code == 0
        # Its signed "leave" was answered before it exited: gone at once, no lease to wait out.
        assert discovery.rpc_targets() == []
        assert (await _status(http, proxy.url))["rpc_servers"] == []
