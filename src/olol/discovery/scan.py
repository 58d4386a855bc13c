"""The opt-in subnet scan (`--scan-subnet`): for LANs where multicast does not get through.

Limited on purpose: only the interface's private /24 (see `netif.scan_network`),
at most `scan_rate` connection attempts a second, a short connect timeout, and
the cluster token is never sent to a scanned address. With a token, an open
port is asked for proof first: the call goes without the token but with a
fresh challenge, and a member's refusal carries an HMAC of the challenge and
of its own addresses (`olol.security.grpc_auth`). Only a host whose proof
checks out, at the address we dialed, joins.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import TYPE_CHECKING, Any

import grpc

from olol.discovery.advert import format_target
from olol.discovery.reach import accepts
from olol.lifecycle import cancel_and_wait
from olol.proto import pb, rpc
from olol.security.grpc_auth import CHALLENGE_KEY, verify_proof
from olol.security.signing import new_nonce
from olol.wire.status import protocol_metadata

if TYPE_CHECKING:
    from olol.discovery.membership import Membership
    from olol.security.tls import TlsFiles

__all__ = ["SubnetScanner"]

log = logging.getLogger("olol.discovery")

_CONNECT_TIMEOUT = 0.5
_CALL_TIMEOUT = 3.0
_CONCURRENCY = 16


class SubnetScanner:
    def __init__(
        self,
        membership: Membership,
        network: ipaddress.IPv4Network,
        *,
        token: str | None,
        tls: TlsFiles | None = None,
        ports: list[int] | None = None,
        rate: float = 20.0,
        interval: float = 300.0,
        skip: set[str] | None = None,
    ) -> None:
        self.membership = membership
        self.network = network
        self.token = token
        self.tls = tls if tls is not None and tls.enabled else None
        self.ports = ports or [50051]
        self.rate = max(0.1, rate)
        self.interval = interval
        self.skip = skip or set()  # our own addresses
        self.attempts = 0
        self.found: list[str] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"scan {self.network}")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.scan_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("subnet scan of %s failed", self.network)
            await asyncio.sleep(self.interval)

    async def scan_once(self) -> list[str]:
        """One pass over the subnet, paced at `rate` attempts/s; returns the hosts that joined."""
        log.info("scanning %s ports %s at %g connections/s", self.network, self.ports, self.rate)
        joined: list[str] = []
        slots = asyncio.Semaphore(_CONCURRENCY)
        tasks: list[asyncio.Task[None]] = []

        async def probe(address: str, port: int) -> None:
            try:
                if await self._probe(address, port):
                    target = format_target(address, port)
                    if await self.membership.join(target, "scan"):
                        joined.append(target)
            finally:
                slots.release()

        try:
            for ip in self.network.hosts():
                address = str(ip)
                if address in self.skip:
                    continue
                for port in self.ports:
                    if format_target(address, port) in self.membership.cluster.hosts:
                        continue
                    await slots.acquire()
                    self.attempts += 1
                    tasks.append(asyncio.create_task(probe(address, port)))
                    await asyncio.sleep(1.0 / self.rate)
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for task in tasks:
                task.cancel()
        self.found += joined
        return joined

    async def _probe(self, address: str, port: int) -> bool:
        return await accepts(address, port, _CONNECT_TIMEOUT) and await self._is_member(address, port)

    async def _is_member(self, address: str, port: int) -> bool:
        challenge = new_nonce()
        target = format_target(address, port)
        credentials = self.tls.channel_credentials() if self.tls is not None else None
        channel = (
            grpc.aio.secure_channel(target, credentials)
            if credentials is not None
            else grpc.aio.insecure_channel(target)
        )
        stubs: Any = rpc
        try:
            await stubs.HostStub(channel).Version(
                pb.Empty(), metadata=(*protocol_metadata(), (CHALLENGE_KEY, challenge)), timeout=_CALL_TIMEOUT
            )
            # It answered without a token: an open agent. Ours only if we run without a token too.
            return not self.token
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNAUTHENTICATED or not self.token:
                return False
            ok = verify_proof(self.token, challenge, exc.trailing_metadata(), address)
            if not ok:
                log.warning("scan: %s refused us without proof of membership; ignored", target)
            return ok
        finally:
            await channel.close(grace=None)
