"""The proxy's side of registration: `POST /olol/register` (the hosts' side is `olol.discovery.registrar`).

A signed join makes an agent an inference host (`Membership`) and lists an
rpc-server apart (`RpcRoster`); a signed leave, or a lapsed lease, removes it.
Each registration's timestamp and nonce are checked, so a captured one cannot
be replayed later or twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from aiohttp import web

from olol.discovery.advert import REGISTRATION, Advert, StrangerAdvert, format_target
from olol.discovery.membership import Membership
from olol.discovery.rpc_roster import RpcRoster
from olol.security.signing import ReplayGuard

__all__ = ["registration_handler"]

log = logging.getLogger("olol.discovery")

_MAX_BODY = 16 * 1024


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
