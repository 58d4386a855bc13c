"""Agents and rpc-servers registering with a proxy they were pointed at (`--proxy host:port`), across subnets.

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
import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from olol.discovery.advert import REGISTRATION, Advert, StrangerAdvert, format_target
from olol.lifecycle import cancel_and_wait
from olol.security.signing import ReplayGuard, new_nonce

if TYPE_CHECKING:
    from olol.discovery.membership import Membership
    from olol.discovery.rpc_roster import RpcRoster
    from olol.security.tls import TlsFiles

__all__ = ["REGISTER_PATH", "Registrar", "registration_handler"]

log = logging.getLogger("olol.discovery")

REGISTER_PATH = "/olol/register"
_TIMEOUT = aiohttp.ClientTimeout(total=10)
_MAX_BODY = 16 * 1024


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


def registration_handler(
    membership: Membership,
    *,
    token: str | None,
    cluster: str,
    rpc: RpcRoster | None = None,
    replay: ReplayGuard | None = None,
) -> Callable[[web.Request], object]:
    """The proxy's `POST /olol/register`: signed joins and leaves from agents, and from rpc-servers
    when `rpc` is given (without it, role "rpc" is refused)."""
    guard = replay or ReplayGuard()

    def refuse(status: int, message: str) -> web.Response:
        return web.json_response({"error": message}, status=status)

    async def handle(request: web.Request) -> web.Response:
        raw = await request.read()  # the HTTP guard has bounded and timed the read already
        if len(raw) > _MAX_BODY:
            return refuse(413, "registration too large")
        try:
            fields = json.loads(raw)
            if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
                raise ValueError("expected an object of strings")
        except ValueError as exc:
            return refuse(400, f"invalid registration: {exc}")
        try:
            advert = Advert.parse(fields, token=token, cluster=cluster, purpose=REGISTRATION)
        except StrangerAdvert as exc:
            log.warning("refused registration from %s: %s", request.remote, exc)
            status = 401 if "signature" in str(exc) or "unsigned" in str(exc) else 400
            return refuse(status, f"registration refused: {exc}")
        try:
            ts, ttl = float(advert.extra.get("ts", "")), float(advert.extra.get("ttl", "30"))
        except ValueError:
            return refuse(400, "registration refused: bad ts/ttl")
        if token and not guard.accept(ts, advert.extra.get("nonce", "")):
            log.warning("refused replayed or stale registration from %s", request.remote)
            return refuse(401, "registration refused: stale or replayed")
        if advert.role != "agent" and (advert.role != "rpc" or rpc is None):
            return refuse(400, f"registration refused: role {advert.role!r} is not taken here")
        target = (advert.targets() or [format_target(request.remote or "", advert.port)])[0]
        leaving, lease = advert.extra.get("op") == "leave", max(1.0, min(ttl, 3600.0))
        added = False
        if advert.role == "rpc" and rpc is not None:  # a worker for split models: listed, never routed to
            key = rpc.registered_key(target)
            if leaving:
                rpc.forget(key, "rpc-server left")
            else:
                added = rpc.seen(key, advert, target, "register", lease=lease)
        elif leaving:
            await membership.leave(target, "agent left")
        else:
            added = await membership.join(target, "register", lease=lease)
        outcome = "left" if leaving else "joined" if added else "renewed"
        return web.json_response({"status": outcome, "host": target, "role": advert.role})

    return handle
