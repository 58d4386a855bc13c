"""`olol rpc-server`: a supervised ggml worker on loopback behind an authenticated gRPC service.

Startup order matters because the worker serves one client at a time: start
the worker and probe it, seed its tensor cache from local GGUF files, and only
then accept tunnels, and only then advertise (`--discovery`: an mDNS advert
with role "rpc", signed with the cluster token like an agent's; `--proxy`: a
signed registration with each proxy, renewed as a lease). The gRPC
service runs on grpc.aio, one event loop with the worker's supervisor and
every tunnel's socket.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from olol import eventloop
from olol.discovery.agent_side import Announcer, start_announcer
from olol.discovery.settings import DiscoverySettings
from olol.ggml.options import SERVER_OPTIONS
from olol.lifecycle import ready_until_signal
from olol.proto import ggml_grpc as rpc
from olol.rpc.data_port import DataPort
from olol.rpc.preseed import preseed
from olol.rpc.service import RpcWorkerService, WorkerAdvice
from olol.rpc.stats import TunnelStats
from olol.rpc.worker import GgmlWorker, WorkerConfig
from olol.security.settings import SecuritySettings
from olol.security.tls import TlsFiles
from olol.security.tokens import warn_if_open

__all__ = ["RpcServer", "RpcServerConfig", "run_rpc_server"]

log = logging.getLogger(__name__)

DEFAULT_PORT = 50052
DATA_PORT_AUTO = -1  # the gRPC port + 1 when that is fixed (firewall rules), else any free port
DEFAULT_MAX_FRAME = 4 << 30  # the largest single tensor upload accepted (an f16 output layer of a 128k vocab is ~1 GiB)


@dataclass
class RpcServerConfig:
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    #: The tunnel's data port (`olol.rpc.data_port`): DATA_PORT_AUTO, a port (0: any free one), or None for
    #: none (coordinators then tunnel through gRPC messages).
    data_port: int | None = DATA_PORT_AUTO
    token: str | None = None
    tls: TlsFiles = field(default_factory=TlsFiles)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    preseed: list[Path] = field(default_factory=list)
    max_frame: int = DEFAULT_MAX_FRAME
    memory_limit: int | None = None  # bytes per device offered to coordinators (None: all that is free)
    advice: WorkerAdvice = field(default_factory=WorkerAdvice)
    grace: float = 5.0
    discovery: DiscoverySettings = field(default_factory=DiscoverySettings)  # off unless --discovery / --proxy


@dataclass
class RpcServer:
    """A running rpc-server: `await RpcServer.start(config)`, then `port`; `await stop()`."""

    config: RpcServerConfig
    worker: GgmlWorker
    service: RpcWorkerService
    server: grpc.aio.Server
    port: int
    data_port: DataPort | None = None
    announcer: Announcer | None = None

    @property
    def target(self) -> str:
        host = "127.0.0.1" if self.config.host in ("0.0.0.0", "", "::") else self.config.host
        return f"{host}:{self.port}"

    @classmethod
    async def start(cls, config: RpcServerConfig) -> RpcServer:
        warn_if_open(log, config.host, config.port, config.token, "rpc-server (and its ggml worker)")
        worker = GgmlWorker(config.worker)
        await worker.start()
        server: grpc.aio.Server | None = None
        data_port: DataPort | None = None
        try:
            seeded: list[str] = []
            for path in config.preseed:
                report = await preseed(worker, path)
                seeded.append(str(path.resolve()))
                state = (
                    "already seeded" if report.skipped else f"{report.tensors} tensors, {report.bytes / 2**20:.1f} MiB"
                )
                log.info("pre-seeded %s (%s)", path, state)
            if worker.config.measure_speed:
                await worker.refresh(measure=True)  # measure after seeding: seeding disturbs the caches
            stats = TunnelStats()
            if config.data_port is not None:
                data_port = DataPort(
                    worker,
                    stats,
                    max_frame=config.max_frame,
                    ssl_context=config.tls.server_ssl_context(require_client_cert=bool(config.tls.ca)),
                )
                await _bind_data_port(data_port, config)
            service = RpcWorkerService(
                worker,
                token=config.token,
                max_frame=config.max_frame,
                device_kind=config.worker.device,
                direct_endpoint=_direct_endpoint(worker),
                advice=config.advice,
                preseeded=seeded,
                memory_limit=config.memory_limit,
                stats=stats,
                data_port=data_port,
            )
            server = grpc.aio.server(options=SERVER_OPTIONS)
            adders: Any = rpc  # generated code is untyped
            adders.add_RpcWorkerServicer_to_server(service, server)
            address = f"{config.host}:{config.port}"
            credentials = config.tls.server_credentials()
            port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
            if port == 0:
                raise OSError(f"cannot bind {address}")
            await server.start()
            announcer = await start_announcer(
                port=port,
                bind_host=config.host,
                settings=config.discovery,
                security=SecuritySettings(token=config.token, tls=config.tls),
                role="rpc",
            )
        except BaseException:
            if server is not None:
                await server.stop(0)
            if data_port is not None:
                await data_port.close()
            await worker.close()
            raise
        return cls(config, worker, service, server, port, data_port, announcer)

    async def stop(self) -> None:
        if self.announcer is not None:  # goodbye first: nobody should pick a worker that is going away
            await self.announcer.stop()
            self.announcer = None
        await self.server.stop(self.config.grace)
        if self.data_port is not None:
            await self.data_port.close()
        await self.worker.close()


async def _bind_data_port(data_port: DataPort, config: RpcServerConfig) -> None:
    """Bind the data port; the automatic choice falls back to any free port (coordinators learn it from
    their ticket, so only a firewall cares which it is)."""
    wanted = config.data_port
    if wanted == DATA_PORT_AUTO:
        wanted = config.port + 1 if config.port else 0
    assert wanted is not None
    try:
        await data_port.start(config.host, wanted)
    except OSError as exc:
        if config.data_port != DATA_PORT_AUTO or wanted == 0:
            raise OSError(f"cannot bind the data port {config.host}:{wanted}: {exc}") from exc
        log.warning("data port %d is taken (%s); using a free port instead", wanted, exc)
        await data_port.start(config.host, 0)


def _direct_endpoint(worker: GgmlWorker) -> str:
    """What a coordinator gives llama-server for --transport direct (a wildcard bind: the hostname; an
    isolated worker: none, nothing outside its namespace can dial it)."""
    if worker.isolated:
        return ""
    if worker.config.host in ("0.0.0.0", "", "::"):
        import socket

        return f"{socket.getfqdn()}:{worker.port}"
    return worker.endpoint


def run_rpc_server(config: RpcServerConfig) -> None:
    """Serve until SIGINT/SIGTERM (on uvloop where installed: every tunnelled round trip crosses this loop twice)."""
    eventloop.run(_serve(config))


async def _serve(config: RpcServerConfig) -> None:
    server = await RpcServer.start(config)
    probe = server.worker.probe
    log.info(
        "olol rpc-server on %s:%d (data port %s), ggml worker %s (%s)%s",
        config.host,
        server.port,
        server.data_port.port if server.data_port is not None else "off",
        server.worker.endpoint,
        ", ".join(server.worker.device_names),
        f", {probe.speed / 1e9:.2f} GB/s" if probe and probe.speed else "",
    )
    try:
        await ready_until_signal(f"{config.host}:{server.port} worker={server.worker.endpoint}")
    finally:
        await server.stop()
