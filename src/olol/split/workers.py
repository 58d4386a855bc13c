"""The coordinator's view of remote `olol rpc-server`s: addresses, a channel each, capabilities."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc

from olol.ggml.options import CHANNEL_OPTIONS
from olol.proto import ggml_grpc as rpc
from olol.proto import ggml_pb as pb
from olol.security.tls import TlsFiles
from olol.security.tokens import token_metadata

__all__ = ["RemoteWorker", "WorkerInfo", "parse_servers"]

DEFAULT_RPC_PORT = 50052


def parse_servers(spec: str | list[str]) -> list[str]:
    """`h1:p,h2` -> ["h1:p", "h2:50052"] (order kept: it is the order of the --tensor-split)."""
    items = spec.split(",") if isinstance(spec, str) else [s for part in spec for s in part.split(",")]
    out = []
    for item in (s.strip() for s in items):
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not port.isdigit() or "]" in port:
            host, port = item, str(DEFAULT_RPC_PORT)
        out.append(f"{host}:{int(port)}")
    if not out:
        raise ValueError("no rpc-servers given (--servers h1:port,h2:port)")
    if len(set(out)) != len(out):
        raise ValueError(f"an rpc-server is listed twice in {', '.join(out)}")
    return out


@dataclass(frozen=True)
class WorkerInfo:
    """What the planner needs of one worker device, from its capabilities."""

    address: str  # the rpc-server's gRPC address
    device: int
    device_name: str
    free_bytes: int
    total_bytes: int
    speed: float  # weight bytes per second (0: unknown)
    direct_endpoint: str
    hostname: str

    @property
    def name(self) -> str:
        return self.address if self.device == 0 else f"{self.address}#{self.device}"


class RemoteWorker:
    """One remote rpc-server; a single gRPC channel carries its capability calls and tunnels."""

    def __init__(self, address: str, *, token: str | None = None, tls: TlsFiles | None = None) -> None:
        self.address = address
        self.tls = tls or TlsFiles()
        self.metadata = token_metadata(token)
        credentials = self.tls.channel_credentials()
        if credentials is None:
            self.channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        else:
            self.channel = grpc.aio.secure_channel(address, credentials, options=CHANNEL_OPTIONS)
        stubs: Any = rpc  # generated code is untyped
        self.stub = stubs.RpcWorkerStub(self.channel)
        self.last: pb.WorkerCapabilities | None = None

    async def capabilities(self, *, refresh: bool = False, timeout: float = 30.0) -> pb.WorkerCapabilities:
        caps: pb.WorkerCapabilities = await self.stub.Capabilities(
            pb.CapabilitiesRequest(refresh=refresh), metadata=self.metadata, timeout=timeout
        )
        self.last = caps
        return caps

    async def infos(self, *, refresh: bool = False, timeout: float = 30.0) -> list[WorkerInfo]:
        caps = await self.capabilities(refresh=refresh, timeout=timeout)
        return [
            WorkerInfo(
                address=self.address,
                device=d.index,
                device_name=d.name,
                free_bytes=d.free_bytes,
                total_bytes=d.total_bytes,
                speed=caps.speed,
                direct_endpoint=caps.direct_endpoint,
                hostname=caps.hostname,
            )
            for d in caps.devices
        ]

    def tunnel(self, requests: AsyncIterator[pb.Chunk]) -> grpc.aio.StreamStreamCall[pb.Chunk, pb.Chunk]:
        """One Tunnel call, fed from `requests` (consumed by gRPC in a task of its own)."""
        call: grpc.aio.StreamStreamCall[pb.Chunk, pb.Chunk] = self.stub.Tunnel(requests, metadata=self.metadata)
        return call

    async def open_stream(self, *, timeout: float = 10.0) -> pb.StreamTicket:
        """A ticket for the rpc-server's data port (see `olol.rpc.data_port`)."""
        ticket: pb.StreamTicket = await self.stub.OpenStream(
            pb.OpenStreamRequest(), metadata=self.metadata, timeout=timeout
        )
        return ticket

    @property
    def host(self) -> str:
        """The rpc-server's host, as dialled (its data port is on the same host)."""
        return self.address.rpartition(":")[0].strip("[]")

    def data_ssl_context(self) -> ssl.SSLContext:
        """TLS for the data port, with the files the gRPC channel uses (same CA, same client certificate)."""
        return self.tls.client_ssl_context()

    async def close(self) -> None:
        await self.channel.close(grace=None)


async def gather_infos(
    workers: list[RemoteWorker], *, refresh: bool = False, timeout: float = 30.0
) -> tuple[list[WorkerInfo], dict[str, Exception]]:
    """Capabilities of every worker at once: (devices of those that answered, errors by address)."""
    results = await asyncio.gather(
        *(w.infos(refresh=refresh, timeout=timeout) for w in workers), return_exceptions=True
    )
    infos: list[WorkerInfo] = []
    errors: dict[str, Exception] = {}
    for worker, result in zip(workers, results, strict=True):
        if isinstance(result, Exception):
            errors[worker.address] = result
        elif isinstance(result, BaseException):
            raise result
        else:
            infos += result
    return infos, errors
