"""The gRPC client of another agent's ModelTransfer service (used by agents and by the proxy)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

import grpc

from olol.proto import models_grpc as rpc
from olol.proto import models_pb as pb
from olol.transfer.manifest import ModelManifest
from olol.wire.status import error_from_rpc, protocol_metadata

__all__ = ["TransferClient"]

# A chunk is 1 MiB by default, up to 16 MiB on request; leave headroom.
_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]


class TransferClient:
    """One channel to one agent.

    `metadata` replaces the default (the protocol version) on every call: pass an
    `AgentBackend`'s, which carries the cluster token too. `credentials` dials TLS.
    """

    def __init__(
        self,
        target: str,
        *,
        metadata: Sequence[tuple[str, str]] | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.target = target.removeprefix("grpc://")
        self.timeout = timeout  # unary calls; streams run as long as they make progress
        self._metadata = tuple(metadata) if metadata is not None else protocol_metadata()
        self._credentials = credentials
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None

    @classmethod
    def like(cls, backend: object, target: str | None = None) -> TransferClient:
        """A client that talks to `target` (default: the backend's own) the way `backend` (an AgentBackend) does."""
        metadata = getattr(backend, "metadata", None)
        tls = getattr(backend, "tls", None)
        credentials = tls.channel_credentials() if tls is not None else None
        return cls(target or str(getattr(backend, "target", "")), metadata=metadata, credentials=credentials)

    @property
    def stub(self) -> Any:
        if self._stub is None:
            if self._credentials is not None:
                self._channel = grpc.aio.secure_channel(self.target, self._credentials, options=_OPTIONS)
            else:
                self._channel = grpc.aio.insecure_channel(self.target, options=_OPTIONS)
            self._stub = rpc.ModelTransferStub(self._channel)  # type: ignore[no-untyped-call]
        return self._stub

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(grace=None)
        self._channel, self._stub = None, None

    async def __aenter__(self) -> TransferClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _unary(self, method: Any, request: object, timeout: float | None = None) -> Any:
        try:
            return await method(request, metadata=self._metadata, timeout=timeout or self.timeout)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self.target) from None

    async def _stream(self, method: Any, request: object) -> AsyncGenerator[Any, None]:
        call = method(request, metadata=self._metadata)
        try:
            async for item in call:
                yield item
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self.target) from None
        finally:
            call.cancel()  # a no-op when finished; stops the peer when we stop early

    async def inventory(self) -> pb.Inventory:
        result: pb.Inventory = await self._unary(self.stub.GetInventory, pb.Empty())
        return result

    async def manifest(self, model: str) -> ModelManifest:
        return ModelManifest.from_pb(await self._unary(self.stub.GetManifest, pb.ManifestRequest(model=model)))

    async def capacity(self, timeout: float | None = None) -> pb.StoreCapacity:
        result: pb.StoreCapacity = await self._unary(self.stub.GetCapacity, pb.Empty(), timeout)
        return result

    def read_blob(self, digest: str, offset: int = 0, chunk_size: int = 0) -> AsyncGenerator[pb.BlobData, None]:
        return self._stream(self.stub.ReadBlob, pb.ReadBlobRequest(digest=digest, offset=offset, chunk_size=chunk_size))

    async def fetch(self, source: str, model: str, name: str = "") -> AsyncIterator[dict[str, Any]]:
        """Ask this agent to copy `model` from the agent at `source`; Ollama-shaped progress lines."""
        async for p in self._stream(self.stub.Fetch, pb.FetchRequest(source=source, model=model, name=name)):
            yield _line(p)

    async def download(self, model: str, name: str = "") -> AsyncIterator[dict[str, Any]]:
        """Ask this agent to download `model` from its registry itself (peers can copy it meanwhile)."""
        async for p in self._stream(self.stub.Download, pb.DownloadRequest(model=model, name=name)):
            yield _line(p)


def _line(p: pb.FetchProgress) -> dict[str, Any]:
    line: dict[str, Any] = {"status": p.status}
    if p.digest:
        line.update(digest=p.digest, total=p.total, completed=p.completed)
    if p.resumed_from:
        line["resumed_from"] = p.resumed_from
    return line
