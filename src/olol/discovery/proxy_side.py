"""Discovery in the proxy: mDNS browsing, the registration endpoint, the subnet scan, lease expiry.

Agents become inference hosts (`Membership`); rpc-servers, advertised or
registered, go to `RpcRoster` instead, apart from the hosts and never routed to.

`install_discovery(app, ...)` wires it into the aiohttp app's start-up and
clean-up, so it runs exactly while the proxy serves (after the configured
hosts had their first probe, before the context closes the backends). The
proxy hands in its cluster and how it adds and removes a host; this package
never imports the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from olol.cluster import Cluster
from olol.discovery.advert import Advert
from olol.discovery.mdns import MdnsBrowser
from olol.discovery.membership import AddHost, Membership, RemoveHost
from olol.discovery.netif import local_ipv4s, scan_network
from olol.discovery.reach import accepts
from olol.discovery.registration import registration_handler
from olol.discovery.rpc_roster import RpcRoster
from olol.discovery.scan import SubnetScanner
from olol.discovery.settings import DiscoverySettings
from olol.security.settings import SecuritySettings

if TYPE_CHECKING:
    from olol.discovery.mdns import MdnsBrowser
    from olol.discovery.scan import SubnetScanner

__all__ = ["DISCOVERY", "ProxyDiscovery", "install_discovery"]

log = logging.getLogger("olol.discovery")


class ProxyDiscovery:
    def __init__(self, settings: DiscoverySettings, security: SecuritySettings, membership: Membership) -> None:
        self.settings = settings
        self.token = security.token
        self.tls = security.tls
        self.membership = membership
        self.browser: MdnsBrowser | None = None
        self.scanner: SubnetScanner | None = None
        # rpc-servers (`olol rpc-server --discovery` or `--proxy`) are no inference hosts: kept apart,
        # never routed to, for coordinators of split models (`rpc_targets`).
        self.rpc = RpcRoster()
        self._by_name: dict[str, str] = {}  # mDNS name -> host id it added
        self._expiry: asyncio.Task[None] | None = None

    def register_handler(self) -> Any:
        return registration_handler(self.membership, rpc=self.rpc, token=self.token, cluster=self.settings.cluster)

    @property
    def rpc_servers(self) -> dict[str, Advert]:
        """What each known rpc-server said, by mDNS name (or `register:host:port` when it registered)."""
        return self.rpc.adverts

    async def start(self) -> None:
        if not self.token:
            log.warning("discovery without a cluster token: any host on the network can join this cluster")
        if self.settings.enabled and self.settings.mdns:
            self.browser = MdnsBrowser(
                self._found,
                self._lost,
                token=self.token,
                cluster=self.settings.cluster,
                interface=self.settings.interface,
            )
            await self.browser.start()
        if self.settings.scan_subnet:
            network = scan_network(self.settings.interface)
            self.scanner = SubnetScanner(
                self.membership,
                network,
                token=self.token,
                tls=self.tls,
                ports=self.settings.scan_ports,
                rate=self.settings.scan_rate,
                interval=self.settings.scan_interval,
                skip=set(local_ipv4s(self.settings.interface)),
            )
            self.scanner.start()
        self._expiry = asyncio.create_task(self._expire_loop(), name="discovery leases")

    async def stop(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry
        if self.scanner is not None:
            await self.scanner.stop()
        if self.browser is not None:
            await self.browser.stop()
        await self.membership.close()
        self.rpc.clear()

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, self.settings.register_interval))
            await self.membership.expire()
            self.rpc.expire()
            await self.rpc.check(_accepts_target)

    def rpc_targets(self) -> list[str]:
        """The rpc-servers of this cluster known now (on mDNS or registered), as `host:port`, sorted."""
        return self.rpc.targets()

    async def _found(self, name: str, advert: Advert, resolved: list[str]) -> None:
        target = advert.dial_target(resolved)
        if advert.role != "agent":
            self.rpc.seen(name, advert, target, "mdns")
            return
        if target is None:
            return
        previous = self._by_name.get(name)
        self._by_name[name] = target
        if previous is not None and previous != target and previous not in self._by_name.values():
            await self.membership.leave(previous, "moved to " + target)
        await self.membership.join(target, "mdns")

    async def _lost(self, name: str) -> None:
        self.rpc.forget(name, "mDNS goodbye")
        target = self._by_name.pop(name, None)
        # Another live advert for the same address (the host restarted under a new name) keeps it.
        if target is not None and target not in self._by_name.values():
            await self.membership.leave(target, "mDNS goodbye")


async def _accepts_target(target: str) -> bool:
    host, _, port = target.rpartition(":")
    return await accepts(host.strip("[]"), int(port))


DISCOVERY: web.AppKey[ProxyDiscovery] = web.AppKey("olol_discovery", ProxyDiscovery)


def install_discovery(
    app: web.Application,
    settings: DiscoverySettings,
    security: SecuritySettings,
    cluster: Cluster,
    add: AddHost,
    remove: RemoveHost,
) -> Any:
    """Discovery for this app's proxy, when enabled: hosts join through `add` and leave through `remove`.

    Returns the handler of signed registrations (`POST REGISTER_PATH`) for the proxy's route table, or
    None when registrations are off.
    """
    if not (settings.enabled or settings.scan_subnet):
        return None
    discovery = ProxyDiscovery(settings, security, Membership(cluster, add, remove))
    app[DISCOVERY] = discovery

    async def start(_app: web.Application) -> None:
        await discovery.start()

    async def stop(_app: web.Application) -> None:
        await discovery.stop()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return discovery.register_handler() if settings.enabled else None
