"""The agent's behaviour, once, over protobuf messages; transports (threaded and
asyncio gRPC servers) only adapt calling conventions to it.

Everything here runs on one asyncio loop: backends are async adapters, and the
threaded server hands calls to this loop (see `olol.bridge`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from olol import PROTOCOL_VERSION, __version__
from olol.agent.hardware import hardware_report
from olol.agent.state import HostStateTracker
from olol.backends.host_settings import HostSettings
from olol.cluster.backend import Backend
from olol.errors import BadRequest
from olol.lifecycle import close_stream
from olol.proto import pb
from olol.wire import convert

__all__ = ["AgentCore"]


class AgentCore:
    def __init__(
        self,
        backend: Backend,
        *,
        parallel: int | None = None,
        state_interval: float = 1.0,
        settings: HostSettings | None = None,
    ) -> None:
        self.backend = backend
        self.node_id = uuid.uuid4().hex[:12]
        self.state_interval = state_interval
        self.settings = settings or HostSettings()
        self._parallel = parallel
        self.tracker = HostStateTracker(backend, parallel or 1, memory_cap=self.settings.max_memory)

    async def start(self) -> None:
        await self.backend.start()
        if self._parallel is None:
            try:
                self.tracker.parallel = max(1, (await self.backend.info()).parallel)
            except Exception:  # backend not up yet: keep 1, the feed corrects nothing but load
                self.tracker.parallel = 1

    async def close(self) -> None:
        await self.backend.close()

    # ------------------------------------------------------------------ inference
    async def generate(self, request: pb.GenerateRequest) -> AsyncIterator[pb.GenerateChunk]:
        body = convert.generate_request_from_pb(request)
        with self.tracker.request():
            stream = self.backend.generate(body)
            try:
                async for chunk in stream:
                    yield convert.generate_chunk_to_pb(chunk)
            finally:
                await close_stream(stream)

    async def chat(self, request: pb.ChatRequest) -> AsyncIterator[pb.ChatChunk]:
        body = convert.chat_request_from_pb(request)
        with self.tracker.request():
            stream = self.backend.chat(body)
            try:
                async for chunk in stream:
                    yield convert.chat_chunk_to_pb(chunk)
            finally:
                await close_stream(stream)

    async def generate_parts(self, parts: AsyncIterator[pb.GeneratePart]) -> AsyncIterator[pb.GenerateChunk]:
        """A generate request sent in parts (`GeneratePart`): the request, then its long texts in slices."""
        head, texts = await _joined(parts, lambda piece: piece.field)
        for number, text in texts.items():
            field = head.DESCRIPTOR.fields_by_number.get(number)
            if field is None or not isinstance(getattr(head, field.name), str):
                raise BadRequest(f"a generate request's text slice names no text field ({number})")
            setattr(head, field.name, text)
        async for chunk in self.generate(head):
            yield chunk

    async def chat_parts(self, parts: AsyncIterator[pb.ChatPart]) -> AsyncIterator[pb.ChatChunk]:
        """A chat sent in parts (`ChatPart`): its request, then its long message texts in slices."""
        head, texts = await _joined(parts, lambda piece: piece.message)
        for index, text in texts.items():
            if index >= len(head.messages):
                raise BadRequest(f"a chat's text slice names message {index} of {len(head.messages)}")
            head.messages[index].content = text
        async for chunk in self.chat(head):
            yield chunk

    async def embed(self, request: pb.EmbedRequest) -> pb.EmbedResponse:
        if not request.input:
            raise BadRequest("input is required")
        with self.tracker.request():
            return convert.embed_response_to_pb(await self.backend.embed(convert.embed_request_from_pb(request)))

    # ------------------------------------------------------------------ models
    async def list(self, request: pb.Empty) -> pb.ModelList:
        return pb.ModelList(models=[convert.model_info_to_pb(m) for m in await self.backend.list_models()])

    async def show(self, request: pb.ShowRequest) -> pb.ShowResponse:
        if not request.model:
            raise BadRequest("model is required")
        body = {"model": request.model, "verbose": request.verbose}
        return convert.show_to_pb(await self.backend.show(body))

    async def running(self, request: pb.Empty) -> pb.RunningList:
        return pb.RunningList(models=[convert.running_to_pb(m) for m in await self.backend.running()])

    async def _progress(self, stream: AsyncIterator[dict[str, object]]) -> AsyncIterator[pb.Progress]:
        try:
            async for line in stream:
                yield convert.progress_to_pb(line)
        finally:
            await close_stream(stream)

    def pull(self, request: pb.PullRequest) -> AsyncIterator[pb.Progress]:
        _need_model(request.model)
        return self._progress(self.backend.pull({"model": request.model, "insecure": request.insecure}))

    def push(self, request: pb.PushRequest) -> AsyncIterator[pb.Progress]:
        _need_model(request.model)
        return self._progress(self.backend.push({"model": request.model, "insecure": request.insecure}))

    def create(self, request: pb.CreateRequest) -> AsyncIterator[pb.Progress]:
        _need_model(request.model)
        return self._progress(self.backend.create(convert.create_request_from_pb(request)))

    async def copy(self, request: pb.CopyRequest) -> pb.Empty:
        if not request.source or not request.destination:
            raise BadRequest("source and destination are required")
        await self.backend.copy(request.source, request.destination)
        return pb.Empty()

    async def delete(self, request: pb.DeleteRequest) -> pb.Empty:
        _need_model(request.model)
        await self.backend.delete(request.model)
        return pb.Empty()

    async def has_blob(self, request: pb.BlobRef) -> pb.BlobStatus:
        return pb.BlobStatus(exists=await self.backend.has_blob(_digest(request.digest)))

    async def push_blob(self, chunks: AsyncIterator[pb.BlobChunk]) -> pb.BlobStatus:
        first = await anext(chunks, None)
        if first is None:
            raise BadRequest("empty blob upload")
        digest = _digest(first.digest)

        async def data() -> AsyncIterator[bytes]:
            if first.data:
                yield first.data
            async for chunk in chunks:
                yield chunk.data

        await self.backend.push_blob(digest, data())
        return pb.BlobStatus(exists=True)

    # ------------------------------------------------------------------ host
    async def version(self, request: pb.Empty) -> pb.VersionInfo:
        healthy = await self.backend.healthy()
        backend_version = ""
        if healthy:
            backend_version = (await self.backend.info()).version
        return pb.VersionInfo(
            olol_version=__version__,
            protocol_version=PROTOCOL_VERSION,
            backend=self.backend.kind,
            backend_version=backend_version,
            healthy=healthy,
            node_id=self.node_id,
            settings=self.settings.effective(),
        )

    async def hardware(self, request: pb.Empty) -> pb.HardwareReport:
        report = hardware_report()
        report.settings.update(self.settings.effective())
        if (cap := self.settings.max_memory) is not None:
            report.memory_cap = cap
            report.ram_total = min(report.ram_total, cap)
            report.ram_free = min(report.ram_free, await self.tracker.free_under_cap(report.ram_free))
        return report

    def watch_state(self, request: pb.WatchRequest) -> AsyncIterator[pb.HostState]:
        interval = request.interval_ms / 1000 if request.interval_ms > 0 else self.state_interval
        return self.tracker.watch(interval)


def _need_model(model: str) -> None:
    if not model:
        raise BadRequest("model is required")


def _digest(digest: str) -> str:
    hexpart = digest.removeprefix("sha256:").removeprefix("sha256-")
    if len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
        raise BadRequest(f"invalid digest format: {digest!r}")
    return "sha256:" + hexpart


async def _joined(parts: AsyncIterator[Any], where: Callable[[pb.TextSlice], int]) -> tuple[Any, dict[int, str]]:
    """A request sent in parts: its head, and its texts joined, by `where` each slice goes."""
    head: Any = None
    texts: dict[int, list[str]] = {}
    async for part in parts:
        if part.WhichOneof("part") == "head":
            head = part.head
        elif part.WhichOneof("part") == "text":
            texts.setdefault(where(part.text), []).append(part.text.text)
    if head is None:
        raise BadRequest("a request sent in parts starts with the request itself")
    return head, {key: "".join(slices) for key, slices in texts.items()}
