"""Agent lifecycle: build the backend (`olol.backends.factory`), serve gRPC (threaded or asyncio), drain on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc

from olol.agent.config import AgentConfig
from olol.agent.core import AgentCore
from olol.agent.servicers import add_to_server, aio_servicer, sync_servicer
from olol.agent.transfer import TransferService, add_transfer_service, build_transfer_service
from olol.backends.factory import make_local_backend
from olol.bridge import LoopThread
from olol.cluster.backend import Backend
from olol.discovery.agent_side import Announcer, advertised_addresses, start_announcer
from olol.lifecycle import wait_for_signal
from olol.security.serving import bind_grpc, grpc_interceptors

log = logging.getLogger("olol.agent")

__all__ = ["AioAgent", "ThreadedAgent", "run_agent"]

# Large enough for a batch of embeddings or a blob chunk; grpc's default is 4 MiB.
_MAX_MESSAGE = 64 * 1024 * 1024
_OPTIONS = [
    ("grpc.max_receive_message_length", _MAX_MESSAGE),
    ("grpc.max_send_message_length", _MAX_MESSAGE),
    # Proxies ping every second to notice a cut link within 3 s (olol.backends.agent): allow it,
    # where grpc's default policy would answer such pings with GOAWAY "too_many_pings".
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 500),
    ("grpc.http2.max_ping_strikes", 0),
]


@dataclass
class ThreadedAgent:
    """A running threaded agent; `stop()` drains in-flight calls for up to `grace` seconds."""

    server: grpc.Server
    loop: LoopThread
    core: AgentCore
    port: int
    grace: float
    announcer: Announcer | None = None  # mDNS advert / proxy registration (olol.discovery)
    transfer: TransferService | None = None  # model copies to and from this host (olol.agent.transfer)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @classmethod
    def start(cls, config: AgentConfig, backend: Backend | None = None) -> ThreadedAgent:
        loop = LoopThread()
        core = AgentCore(
            backend or make_local_backend(config), parallel=config.parallel, state_interval=config.state_interval,
            settings=config.settings,
        )
        try:
            loop.call(core.start())
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=config.workers), options=_OPTIONS,
                                 interceptors=_interceptors(config, aio=False))
            add_to_server(sync_servicer(core, loop), server)
            transfer = build_transfer_service(config, core.backend)
            add_transfer_service(server, transfer, loop)
            port = bind_grpc(server, config.host, config.port, config.security)
            server.start()
        except BaseException:
            loop.call(core.close())
            loop.stop()
            raise
        announcer = loop.call(
            start_announcer(port=port, bind_host=config.host, settings=config.discovery, security=config.security)
        )
        return cls(server, loop, core, port, config.grace, announcer, transfer)

    def stop(self) -> None:
        """Idempotent: a second call (e.g. a signal after a test's own stop) returns at once."""
        if not self.loop.running:
            return
        if self.announcer is not None:  # goodbye first: proxies stop routing here while we drain
            self.loop.call(self.announcer.stop())
        self.server.stop(self.grace).wait()
        self.loop.call(self.core.close())
        self.loop.stop()


@dataclass
class AioAgent:
    server: grpc.aio.Server
    core: AgentCore
    port: int
    grace: float
    announcer: Announcer | None = None
    transfer: TransferService | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @classmethod
    async def start(cls, config: AgentConfig, backend: Backend | None = None) -> AioAgent:
        core = AgentCore(
            backend or make_local_backend(config), parallel=config.parallel, state_interval=config.state_interval,
            settings=config.settings,
        )
        await core.start()
        try:
            server = grpc.aio.server(options=_OPTIONS, interceptors=_interceptors(config, aio=True))
            add_to_server(aio_servicer(core), server)
            transfer = build_transfer_service(config, core.backend)
            add_transfer_service(server, transfer)
            port = bind_grpc(server, config.host, config.port, config.security)
            await server.start()
        except BaseException:
            await core.close()
            raise
        announcer = await start_announcer(
            port=port, bind_host=config.host, settings=config.discovery, security=config.security
        )
        return cls(server, core, port, config.grace, announcer, transfer)

    async def stop(self) -> None:
        if self.announcer is not None:
            await self.announcer.stop()
            self.announcer = None
        await self.server.stop(self.grace)  # a no-op once stopped
        await self.core.close()


def _interceptors(config: AgentConfig, *, aio: bool) -> list[Any]:
    """The cluster token guards every service on the agent's port (none when auth is off)."""
    return grpc_interceptors(
        config.security, aio=aio, addresses=lambda: advertised_addresses(config.host, config.discovery)
    )


def _announce(config: AgentConfig, port: int, kind: str) -> None:
    log.info("olol agent (%s, %s backend) listening on %s:%d", kind, config.backend, config.host, port)
    # A plain line on stdout that scripts and tests wait for instead of sleeping.
    print(f"READY {config.host}:{port}", flush=True)


def run_agent(config: AgentConfig) -> None:
    """Serve until SIGINT/SIGTERM, then drain in-flight streams for up to `config.grace` s."""
    if config.use_async:
        asyncio.run(_run_aio(config))
        return
    asyncio.run(_run_threaded(config))


async def _run_threaded(config: AgentConfig) -> None:
    # The gRPC server has threads and a loop of its own; this loop only waits for the signal, and
    # keeps its handlers while the server drains (a second Ctrl-C then does nothing).
    agent = ThreadedAgent.start(config)
    _announce(config, agent.port, "threaded")
    await wait_for_signal()
    log.info("shutting down: draining in-flight calls (up to %.0fs)", config.grace)
    await asyncio.to_thread(agent.stop)


async def _run_aio(config: AgentConfig) -> None:
    agent = await AioAgent.start(config)
    _announce(config, agent.port, "asyncio")
    await wait_for_signal()
    log.info("shutting down: draining in-flight calls (up to %.0fs)", config.grace)
    await agent.stop()
