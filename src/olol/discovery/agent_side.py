"""Discovery in an agent (or rpc-server): advertise over mDNS and register with proxies.

`Announcer` is transport-neutral: it runs on whatever event loop starts it (the
asyncio agent's, or the threaded agent's loop thread) and never blocks serving;
a network without multicast or an unreachable proxy only costs log lines.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from olol.discovery.advert import Advert
from olol.discovery.mdns import MdnsAdvertiser
from olol.discovery.netif import local_ipv4s, route_source
from olol.discovery.registrar import Registrar
from olol.discovery.settings import DiscoverySettings
from olol.security.settings import SecuritySettings

if TYPE_CHECKING:
    from olol.discovery.mdns import MdnsAdvertiser

__all__ = ["Announcer", "advertised_addresses", "start_announcer"]

log = logging.getLogger("olol.discovery")


def advertised_addresses(bind_host: str, settings: DiscoverySettings) -> list[str]:
    """Where others can dial us: the explicit address, the bound one, else the interface's (or all)."""
    if settings.advertise_host:
        return [settings.advertise_host]
    if bind_host not in ("0.0.0.0", "", "::"):
        with contextlib.suppress(OSError):
            return [socket.gethostbyname(bind_host)]
    return local_ipv4s(settings.interface)


def _split(proxy: str) -> tuple[str, int]:
    parts = urlsplit(proxy if "://" in proxy else f"//{proxy}")
    return parts.hostname or "127.0.0.1", parts.port or 8000


class Announcer:
    def __init__(
        self, *, port: int, bind_host: str, settings: DiscoverySettings, security: SecuritySettings, role: str = "agent"
    ) -> None:
        self.port = port
        self.bind_host = bind_host
        self.settings = settings
        self.security = security
        self.role = role
        self.node_id = f"{socket.gethostname()}:{port}"
        self.advertiser: MdnsAdvertiser | None = None
        self.registrars: list[Registrar] = []

    def advert(self, addresses: list[str] | None = None) -> Advert:
        return Advert(
            role=self.role,
            node_id=self.node_id,
            port=self.port,
            addresses=tuple(
                addresses if addresses is not None else advertised_addresses(self.bind_host, self.settings)
            ),
            cluster=self.settings.cluster,
            tls=self.security.tls.has_identity,
        )

    def _toward(self, proxy: str) -> Advert:
        """The address a proxy should dial, as seen from the route toward it (across subnets)."""
        if self.settings.advertise_host or self.bind_host not in ("0.0.0.0", "", "::"):
            return self.advert()
        host, port = _split(proxy)
        try:
            return self.advert([route_source(socket.gethostbyname(host), port)])
        except OSError:
            return self.advert()

    async def start(self) -> None:
        token = self.security.token
        if not token:
            log.warning("announcing without a cluster token: adverts and registrations are unsigned")
        if self.settings.enabled and self.settings.mdns:
            advert = self.advert()
            advertiser = MdnsAdvertiser(advert, advert.signed(token), self.settings.interface)
            try:
                await advertiser.start()
                self.advertiser = advertiser
            except Exception as exc:  # no multicast here: registration (if any) still works
                log.warning("mDNS advertising failed: %s", exc)
        for proxy in self.settings.proxies:
            registrar = Registrar(
                proxy,
                functools.partial(self._toward, proxy),
                token=token,
                tls=self.security.tls,
                interval=self.settings.register_interval,
            )
            await registrar.start()
            self.registrars.append(registrar)

    async def stop(self) -> None:
        for registrar in self.registrars:
            await registrar.stop()
        self.registrars.clear()
        if self.advertiser is not None:
            await self.advertiser.stop()
            self.advertiser = None


async def start_announcer(
    *, port: int, bind_host: str, settings: DiscoverySettings, security: SecuritySettings, role: str = "agent"
) -> Announcer | None:
    """An announcer, started; None when it neither advertises nor registers.

    `role="rpc"` is for `olol rpc-server`: its adverts and registrations carry the
    role, and proxies keep them apart from inference hosts (`ProxyDiscovery.rpc`).
    """
    if not (settings.enabled or settings.proxies):
        return None
    announcer = Announcer(port=port, bind_host=bind_host, settings=settings, security=security, role=role)
    await announcer.start()
    return announcer
