"""DNS-SD over mDNS (`_olol._tcp.local.`): agents and rpc-servers advertise, the proxy browses.

zeroconf is imported here only, so a process without `--discovery` never
loads it (and runs without it installed).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from olol.discovery.advert import Advert, StrangerAdvert
from olol.discovery.netif import local_ipv4s
from olol.discovery.settings import SERVICE_TYPE

__all__ = ["MdnsAdvertiser", "MdnsBrowser"]

log = logging.getLogger("olol.discovery")

_RESOLVE_TIMEOUT_MS = 3000
_GOODBYE_TIMEOUT = 2.0  # seconds; zeroconf sends its goodbyes within about one
_STRANGER_LOG_EVERY = 300.0  # seconds: a stranger advertising forever is logged now and then, not per packet

Found = Callable[[str, Advert, list[str]], Awaitable[None]]  # (service name, advert, resolved addresses)
Lost = Callable[[str], Awaitable[None]]


def _zeroconf(interface: str | None) -> Any:
    try:
        from zeroconf import IPVersion
        from zeroconf.asyncio import AsyncZeroconf
    except ImportError as exc:  # an optional dependency: say how to get it
        raise RuntimeError("--discovery needs the zeroconf package: pip install zeroconf") from exc
    interfaces: Any = local_ipv4s(interface) if interface else None
    if interfaces is None:
        return AsyncZeroconf(ip_version=IPVersion.V4Only)
    return AsyncZeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)


def _instance(advert: Advert) -> str:
    """Unique on the LAN even when machines share a hostname (clones, containers): the address is in it.

    DNS labels are at most 63 bytes, hence the truncated hostname.
    """
    hostname = advert.node_id.rsplit(":", 1)[0][:20]
    where = advert.addresses[0] if advert.addresses else "any"
    raw = f"olol-{advert.role}-{hostname}-{where}-{advert.port}"
    return "".join(c if c.isalnum() or c == "-" else "-" for c in raw)


class MdnsAdvertiser:
    """Registers one service while running; unregisters (mDNS goodbye) on stop, so browsers drop it at once."""

    def __init__(self, advert: Advert, properties: Mapping[str, str], interface: str | None = None) -> None:
        self.advert = advert
        self.properties = dict(properties)
        self.interface = interface
        self._zc: Any = None
        self._info: Any = None

    async def start(self) -> None:
        from zeroconf.asyncio import AsyncServiceInfo

        self._zc = _zeroconf(self.interface)
        self._info = AsyncServiceInfo(
            SERVICE_TYPE,
            f"{_instance(self.advert)}.{SERVICE_TYPE}",
            addresses=[socket.inet_aton(a) for a in self.advert.addresses],
            port=self.advert.port,
            properties=self.properties,
            server=f"{_instance(self.advert)}.local.",
        )
        await self._zc.async_register_service(self._info, allow_name_change=True)
        log.info("advertising %s on mDNS (%s)", self._info.name, ", ".join(self.advert.targets()))

    async def stop(self) -> None:
        if self._zc is None:
            return
        try:  # a closed network must not block shutdown
            # The call only schedules the goodbyes; closing before they are out would cancel them,
            # and browsers would keep this host until its records expire (minutes) instead of at once.
            goodbyes = await self._zc.async_unregister_service(self._info)
            async with asyncio.timeout(_GOODBYE_TIMEOUT):
                await goodbyes
        except Exception as exc:
            log.warning("mDNS goodbye for %s not sent (%s): proxies drop it once unreachable", self._info.name, exc)
        await self._zc.async_close()
        self._zc = None


class MdnsBrowser:
    """Follows `_olol._tcp` services; only adverts signed with our token (and of our cluster) get through."""

    def __init__(
        self, on_found: Found, on_lost: Lost, *, token: str | None, cluster: str, interface: str | None = None
    ) -> None:
        self.on_found = on_found
        self.on_lost = on_lost
        self.token = token
        self.cluster = cluster
        self.interface = interface
        self.ignored: dict[str, str] = {}  # service name -> why (for status and tests)
        self._logged: dict[str, float] = {}
        self._zc: Any = None
        self._browser: Any = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._resolving: dict[str, asyncio.Task[None]] = {}  # name -> its read of the TXT record in flight

    async def start(self) -> None:
        from zeroconf.asyncio import AsyncServiceBrowser

        self._zc = _zeroconf(self.interface)
        self._browser = AsyncServiceBrowser(self._zc.zeroconf, [SERVICE_TYPE], handlers=[self._on_change])
        log.info("browsing mDNS for %s (cluster %r)", SERVICE_TYPE, self.cluster)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._browser is not None:
            await self._browser.async_cancel()
        if self._zc is not None:
            await self._zc.async_close()
        self._zc = self._browser = None

    def _on_change(self, zeroconf: Any, service_type: str, name: str, state_change: Any) -> None:
        from zeroconf import ServiceStateChange

        if state_change is ServiceStateChange.Removed:
            # A read begun on an earlier update must not finish after the goodbye and bring the host back.
            pending = self._resolving.pop(name, None)
            if pending is not None:
                pending.cancel()
            self._spawn(self.on_lost(name))
        else:  # Added or Updated: (re)read the TXT record, it may have changed
            task = self._spawn(self._resolve(zeroconf, service_type, name))
            self._resolving[name] = task
            task.add_done_callback(functools.partial(self._resolved, name))

    def _resolved(self, name: str, task: asyncio.Task[None]) -> None:
        if self._resolving.get(name) is task:
            del self._resolving[name]

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _resolve(self, zeroconf: Any, service_type: str, name: str) -> None:
        from zeroconf.asyncio import AsyncServiceInfo

        info = AsyncServiceInfo(service_type, name)
        if not await info.async_request(zeroconf, _RESOLVE_TIMEOUT_MS):
            log.debug("could not resolve %s", name)
            return
        try:
            advert = Advert.parse(info.properties or {}, token=self.token, cluster=self.cluster)
        except StrangerAdvert as exc:
            self._ignore(name, str(exc), info.parsed_addresses())
            return
        self.ignored.pop(name, None)
        try:
            await self.on_found(name, advert, list(info.parsed_addresses()))
        except Exception:  # one bad host must not stop the browser
            log.exception("could not add discovered host %s", name)

    def _ignore(self, name: str, reason: str, addresses: list[str]) -> None:
        if len(self.ignored) >= 1024 and name not in self.ignored:  # bounded, whatever strangers advertise
            self.ignored.pop(next(iter(self.ignored)))
        self.ignored[name] = reason
        now = time.monotonic()
        if now - self._logged.get(name, -_STRANGER_LOG_EVERY) >= _STRANGER_LOG_EVERY:
            if len(self._logged) > 1024:
                self._logged.clear()
            self._logged[name] = now
            log.warning("ignoring mDNS advert %s from %s: %s", name, ",".join(addresses) or "?", reason)
