"""The agent's ModelTransfer service: hand out this host's models, and fetch models from peers.

Registered beside the agent's own services on the same gRPC server, through the
same method adapters (`olol.agent.servicers`), so the protocol check, error
mapping and any call guard apply to it as to every other RPC.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import psutil

from olol.agent import servicers
from olol.agent.config import AgentConfig
from olol.agent.hardware import gpus
from olol.bridge import LoopThread
from olol.cluster.backend import Backend
from olol.errors import BadRequest, ModelNotFound, Unsupported
from olol.proto import models_grpc as rpc
from olol.proto import models_pb as pb
from olol.security.tokens import token_metadata
from olol.transfer._memory import keep_freed_buffers
from olol.transfer.blobs import read_chunks
from olol.transfer.client import TransferClient
from olol.transfer.fetch import BlobLocks, fetch_model
from olol.transfer.growing import Arrivals, follow_chunks
from olol.transfer.install import GgufSink, ModelSink, OllamaSink
from olol.transfer.manifest import digest_hex
from olol.transfer.paths import default_ollama_models, default_transfer_dir
from olol.transfer.registry import DEFAULT_REGISTRY, RegistrySource
from olol.transfer.stores import BlobNotFound, GgufDir, ModelStore, OllamaModelsDir
from olol.transfer.throttle import BandwidthLimiter
from olol.wire.status import protocol_metadata

__all__ = ["TRANSFER_METHODS", "TransferService", "add_transfer_service", "build_transfer_service"]

log = logging.getLogger("olol.agent")

# RPC name -> (TransferService attribute, call shape), as `servicers.METHODS` for AgentCore.
TRANSFER_METHODS: dict[str, tuple[str, str]] = {
    "GetInventory": ("get_inventory", "unary"),
    "GetManifest": ("get_manifest", "unary"),
    "ReadBlob": ("read_blob", "stream"),
    "Fetch": ("fetch", "stream"),
    "GetCapacity": ("get_capacity", "unary"),
    "Download": ("download", "stream"),
}
_VRAM_TTL = 5.0  # nvidia-smi takes tens of ms: placement asks often, GPUs change slowly


class TransferService:
    def __init__(
        self,
        backend: Backend,
        store: ModelStore | None,
        staging: Path,
        *,
        rate_limit: float | None = None,
        peer_metadata: Sequence[tuple[str, str]] | None = None,
        peer_credentials: Any = None,
        registry: str | None = None,
    ) -> None:
        self.backend = backend
        self.registry = registry or DEFAULT_REGISTRY
        self.store = store
        self.staging = staging
        self.rate = BandwidthLimiter(rate_limit) if rate_limit else None
        self.peer_metadata = peer_metadata
        self.peer_credentials = peer_credentials
        self.locks = BlobLocks()
        self.arrivals = Arrivals()  # what this agent is receiving: peers may copy it from here already
        self.stats: dict[str, int] = {"bytes_sent": 0, "bytes_received": 0, "fetches": 0, "reads": 0}
        self.active = 0
        self._vram: tuple[float, int] = (0.0, 0)

    def _store(self) -> ModelStore:
        if self.store is None:
            raise Unsupported("this agent has no model store to copy from (see --ollama-models / --models-dir)")
        return self.store

    def sink(self) -> ModelSink:
        if self.backend.kind == "ollama":
            return OllamaSink(self.backend, self.staging)
        if isinstance(self.store, GgufDir):
            return GgufSink(self.store)
        raise Unsupported(f"a {self.backend.kind} host without a model directory cannot receive models")

    # ------------------------------------------------------------------ source side
    async def get_inventory(self, request: pb.Empty) -> pb.Inventory:
        if self.store is None:
            return pb.Inventory()
        items = await asyncio.to_thread(self.store.inventory)
        return pb.Inventory(
            store=str(self.store.root),
            kind=self.store.kind,
            models=[pb.InventoryEntry(name=i.name, format=i.format, size=i.size, digest=i.digest) for i in items],
        )

    async def get_manifest(self, request: pb.ManifestRequest) -> pb.ModelManifest:
        if not request.model:
            raise BadRequest("model is required")
        try:
            manifest = await asyncio.to_thread(self._store().manifest, request.model)
        except (ModelNotFound, Unsupported):
            arriving = self.arrivals.manifest(request.model)
            if arriving is None:
                raise
            manifest = arriving  # still arriving here: ReadBlob serves its blobs as they come
        return manifest.to_pb()

    async def read_blob(self, request: pb.ReadBlobRequest) -> AsyncIterator[pb.BlobData]:
        digest_hex(request.digest)
        growing = self.arrivals.blob(request.digest)
        chunks: AsyncIterator[pb.BlobData]
        try:
            path = await asyncio.to_thread(self._store().blob_path, request.digest)
            chunks = read_chunks(path, request.offset, request.chunk_size, self.rate)
        except (BlobNotFound, Unsupported):
            if growing is None:
                raise
            chunks = follow_chunks(growing, request.offset, request.chunk_size, self.rate)
        self.active += 1
        self.stats["reads"] += 1
        try:
            async for chunk in chunks:
                self.stats["bytes_sent"] += len(chunk.data)
                yield chunk
        finally:
            self.active -= 1

    # ------------------------------------------------------------------ destination side
    async def fetch(self, request: pb.FetchRequest) -> AsyncIterator[pb.FetchProgress]:
        if not request.source or not request.model:
            raise BadRequest("source and model are required")
        sink = self.sink()
        self.active += 1
        self.stats["fetches"] += 1
        started = time.monotonic()
        log.info("fetching %s from %s", request.model, request.source)
        try:
            async with TransferClient(
                request.source, metadata=self.peer_metadata, credentials=self.peer_credentials
            ) as source:
                async for line in fetch_model(
                    source,
                    request.model,
                    sink,
                    name=request.name,
                    locks=self.locks,
                    stats=self.stats,
                    arrivals=self.arrivals,
                ):
                    yield _progress(line)
            log.info("fetched %s from %s in %.1fs", request.model, request.source, time.monotonic() - started)
        finally:
            self.active -= 1

    async def download(self, request: pb.DownloadRequest) -> AsyncIterator[pb.FetchProgress]:
        """The model from its registry, downloaded by this agent in order so peers can copy it as it arrives."""
        if not request.model:
            raise BadRequest("model is required")
        sink = self.sink()
        self.active += 1
        started = time.monotonic()
        log.info("downloading %s from %s", request.model, self.registry)
        try:
            async with RegistrySource(self.registry) as registry:
                async for line in fetch_model(
                    registry,
                    request.model,
                    sink,
                    name=request.name or request.model,
                    locks=self.locks,
                    verb="pulling",
                    arrivals=self.arrivals,
                ):
                    yield _progress(line)
            log.info("downloaded %s in %.1fs", request.model, time.monotonic() - started)
        finally:
            self.active -= 1

    # ------------------------------------------------------------------ capacity
    def _vram_free(self) -> int:
        at, value = self._vram
        if time.monotonic() - at > _VRAM_TTL:
            value = sum(g.memory_free for g in gpus())
            self._vram = (time.monotonic(), value)
        return value

    async def get_capacity(self, request: pb.Empty) -> pb.StoreCapacity:
        store = self.store
        disk = await asyncio.to_thread(store.disk_free) if store is not None else -1
        if store is None or self.backend.kind == "ollama":
            # What this host receives lands in the staging dir first, then in Ollama's store.
            disk = disk if disk >= 0 else await asyncio.to_thread(_disk_free, self.staging)
        return pb.StoreCapacity(
            store=str(store.root) if store is not None else "",
            kind=store.kind if store is not None else "",
            disk_free=disk,
            ram_free=psutil.virtual_memory().available,
            vram_free=await asyncio.to_thread(self._vram_free),
            active_transfers=self.active,
        )


def _progress(line: dict[str, Any]) -> pb.FetchProgress:
    return pb.FetchProgress(
        status=str(line.get("status", "")),
        digest=str(line.get("digest", "")),
        total=int(line.get("total") or 0),
        completed=int(line.get("completed") or 0),
        resumed_from=int(line.get("resumed_from") or 0),
    )


def _disk_free(path: Path) -> int:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return -1


def build_transfer_service(config: AgentConfig, backend: Backend) -> TransferService:
    """The service for this agent: its backend's store, staging dir and peer credentials from `config`."""
    store: ModelStore | None = None
    if backend.kind == "ollama":
        store = OllamaModelsDir(
            Path(config.ollama_models).expanduser() if config.ollama_models else default_ollama_models()
        )
    elif config.models_dir or config.model:
        store = GgufDir(Path(config.models_dir or Path(str(config.model)).parent).expanduser())
    staging = Path(config.transfer_dir).expanduser() if config.transfer_dir else default_transfer_dir()
    # Peers are called with this agent's own cluster credentials (the same token and TLS files it serves with).
    metadata = (*protocol_metadata(), *token_metadata(config.security.token))
    keep_freed_buffers()  # a copy's 1 MiB buffers, reused rather than faulted in afresh for every chunk
    credentials = config.security.tls.channel_credentials() if config.security.tls.enabled else None
    service = TransferService(
        backend,
        store,
        staging,
        rate_limit=config.transfer_rate,
        peer_metadata=metadata,
        peer_credentials=credentials,
        registry=config.registry,
    )
    return service


def add_transfer_service(server: Any, service: TransferService, loop: LoopThread | None = None) -> None:
    """Register `service` on an agent's server: threaded when `loop` is given, else asyncio."""
    if loop is None:
        attrs = {
            name: servicers._aio_method(getattr(service, attr), shape)
            for name, (attr, shape) in TRANSFER_METHODS.items()
        }
    else:
        attrs = {
            name: servicers._sync_method(getattr(service, attr), shape, loop)
            for name, (attr, shape) in TRANSFER_METHODS.items()
        }
    rpc.add_ModelTransferServicer_to_server(type("ModelTransferServicer", (), attrs)(), server)  # type: ignore[no-untyped-call]
