"""Agents and rpc-servers registering with a proxy they were pointed at (`--proxy host:port`), across subnets.

The host's side (`Registrar`); the proxy's handler is `olol.discovery.registration`.

The host POSTs a signed advert to `/olol/register` every `register_interval`
seconds (a lease: the proxy forgets a registration that lapses while the host
is down) and a signed `leave` when it stops. Each registration carries a
timestamp and a nonce under the signature, so a captured one cannot be
replayed later or twice. A refused or failed registration is retried with
backoff and logged, never fatal: the host keeps serving. The proxy makes an
agent ("agent" role) an inference host and lists an rpc-server ("rpc") apart,
for split models only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import aiohttp

from olol.discovery.advert import REGISTER_PATH, REGISTRATION, Advert
from olol.lifecycle import cancel_and_wait
from olol.security.signing import new_nonce

if TYPE_CHECKING:
    from olol.security.tls import TlsFiles

__all__ = ["Registrar", "proxy_url"]

log = logging.getLogger("olol.discovery")

_TIMEOUT = aiohttp.ClientTimeout(total=10)


def proxy_url(proxy: str, tls: TlsFiles | None) -> str:
    """`host:port` -> the registration URL; https when the cluster uses TLS, unless a scheme is given."""
    base = proxy if "://" in proxy else f"{'https' if tls is not None and tls.enabled else 'http'}://{proxy}"
    return base.rstrip("/") + REGISTER_PATH


class Registrar:
    """One agent's (or rpc-server's) registration with one proxy, renewed until `stop()`."""

    def __init__(
        self,
        proxy: str,
        advert: Callable[[], Advert],
        *,
        token: str | None,
        tls: TlsFiles | None = None,
        interval: float = 10.0,
    ) -> None:
        self.url = proxy_url(proxy, tls)
        self.advert = advert  # built per registration: the address toward the proxy may change
        self.token = token
        self.tls = tls
        self.interval = interval
        self.registered = False
        self.last_error = ""
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    def _message(self, op: str) -> dict[str, str]:
        base = self.advert()
        extra = {"op": op, "ts": f"{time.time():.3f}", "nonce": new_nonce(), "ttl": f"{3 * self.interval:g}"}
        return replace(base, extra={**base.extra, **extra}).signed(self.token, REGISTRATION)

    async def start(self) -> None:
        ssl = self.tls.client_ssl_context() if self.url.startswith("https") and self.tls is not None else None
        connector = aiohttp.TCPConnector(ssl=ssl) if ssl is not None else None
        self._session = aiohttp.ClientSession(timeout=_TIMEOUT, connector=connector)
        self._task = asyncio.create_task(self._run(), name=f"register {self.url}")

    async def _post(self, op: str) -> None:
        assert self._session is not None
        async with self._session.post(self.url, json=self._message(op)) as resp:
            if resp.status != 200:
                text = (await resp.text())[:200]
                raise RuntimeError(f"proxy answered {resp.status}: {text}")

    async def _run(self) -> None:
        backoff = 1.0
        while True:
            try:
                await self._post("join")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.registered or not self.last_error:
                    log.warning("registration with %s failed: %s (retrying)", self.url, exc)
                self.registered, self.last_error = False, str(exc)
                await asyncio.sleep(min(backoff, self.interval))
                backoff *= 2
                continue
            if not self.registered:
                log.info("registered with proxy %s", self.url)
            self.registered, self.last_error, backoff = True, "", 1.0
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self._session is not None:
            if self.registered:
                with contextlib.suppress(Exception):  # best effort: the lease lapses anyway
                    async with asyncio.timeout(2):
                        await self._post("leave")
            await self._session.close()
            self._session = None
