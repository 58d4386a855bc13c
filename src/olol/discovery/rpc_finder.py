"""Finding this cluster's rpc-servers over mDNS, for a coordinator of a split model (`olol dist --discovery`).

A one-shot browse: rpc-servers answer mDNS queries at once, so a few seconds
see every one on the link; with `want`, it returns as soon as that many are
found. The same checks as the proxy's: only adverts signed with the cluster
token and of this cluster count, and agents (role "agent") are not workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from olol.discovery.advert import Advert
from olol.discovery.mdns import MdnsBrowser
from olol.discovery.settings import DiscoverySettings

__all__ = ["find_rpc_servers"]

log = logging.getLogger("olol.discovery")


async def find_rpc_servers(
    settings: DiscoverySettings, token: str | None, *, wait: float = 3.0, want: int | None = None
) -> list[str]:
    """`host:port` of the rpc-servers advertising, sorted (a stable split order); may be empty."""
    found: dict[str, str] = {}
    enough = asyncio.Event()

    async def on_found(name: str, advert: Advert, resolved: list[str]) -> None:
        target = advert.dial_target(resolved)
        if advert.role != "rpc" or target is None:
            return
        found[name] = target
        if want is not None and len(set(found.values())) >= want:
            enough.set()

    async def on_lost(name: str) -> None:
        found.pop(name, None)

    if not token:
        log.warning("finding rpc-servers without a cluster token: any host on the network can pose as one")
    browser = MdnsBrowser(on_found, on_lost, token=token, cluster=settings.cluster, interface=settings.interface)
    await browser.start()
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await enough.wait()
    finally:
        await browser.stop()
    targets = sorted(set(found.values()))
    log.info("found %d rpc-server(s) on mDNS: %s", len(targets), ", ".join(targets) or "none")
    return targets
