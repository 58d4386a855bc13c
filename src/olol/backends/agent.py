"""An agent seen through its gRPC API as a `Backend`, so the proxy treats agents
and plain Ollama hosts the same way. Conversions are `olol.wire.convert`'s.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from olol.cluster.backend import JSON, Backend, BackendInfo
from olol.errors import OlolError
from olol.proto import pb, rpc
from olol.security.tokens import token_metadata
from olol.wire import convert
from olol.wire.status import error_from_rpc, protocol_metadata

if TYPE_CHECKING:
    from olol.security.tls import TlsFiles

T = TypeVar("T")

__all__ = ["AgentBackend"]

#: A chat message this long (characters) is sent after its request, in slices of `SLICE_CHARS` (`ChatParts`).
PART_CHARS = 1 << 20
SLICE_CHARS = 1 << 20

_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    # A host whose link came back must rejoin in seconds: cap reconnect backoff (default: up to 120 s)
    # and the connect timeout (default 20 s, which a dropped SYN would wait out in full).
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.min_reconnect_backoff_ms", 2000),
    ("grpc.max_reconnect_backoff_ms", 3000),
    # A cut link never closes the TCP connection: pings find it in ~2 s, so streams on it end with an
    # error (and the host is marked down) instead of hanging until TCP gives up minutes later.
    ("grpc.keepalive_time_ms", 1000),
    ("grpc.keepalive_timeout_ms", 1500),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]


class AgentBackend(Backend):
    kind = "agent"

    def __init__(
        self,
        target: str,
        *,
        timeout: float | None = None,
        token: str | None = None,
        tls: TlsFiles | None = None,
        extra_metadata: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.target = target.removeprefix("grpc://")
        self.timeout = timeout  # for unary calls; streams run as long as they produce
        self.tls = tls if tls is not None and tls.enabled else None
        # Every call carries the protocol version and, when the cluster has one, its token.
        self.metadata = (*protocol_metadata(), *token_metadata(token), *extra_metadata)
        self._channel: grpc.aio.Channel | None = None
        self._stubs: tuple[Any, Any, Any] | None = None

    async def start(self) -> None:
        self._open()

    def _open(self) -> tuple[Any, Any, Any]:
        if self._stubs is None:
            credentials = self.tls.channel_credentials() if self.tls is not None else None
            if credentials is not None:
                self._channel = grpc.aio.secure_channel(self.target, credentials, options=_OPTIONS)
            else:
                self._channel = grpc.aio.insecure_channel(self.target, options=_OPTIONS)
            stubs: Any = rpc  # generated code is untyped
            self._stubs = (
                stubs.InferenceStub(self._channel),
                stubs.ModelsStub(self._channel),
                stubs.HostStub(self._channel),
            )
        return self._stubs

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(grace=None)
        self._channel, self._stubs = None, None

    @property
    def inference(self) -> Any:
        return self._open()[0]

    @property
    def models(self) -> Any:
        return self._open()[1]

    @property
    def host(self) -> Any:
        return self._open()[2]

    # ------------------------------------------------------------------ plumbing
    async def _unary(self, method: Callable[..., Awaitable[T]], request: object) -> T:
        try:
            return await method(request, metadata=self.metadata, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self.target) from None

    async def _stream(self, method: Callable[..., Any], request: object, out: Callable[[Any], T]) -> AsyncGenerator[T]:
        call = method(request, metadata=self.metadata)
        try:
            async for item in call:
                yield out(item)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self.target) from None
        finally:
            call.cancel()  # no-op when finished; stops the agent's generation when we stop early
            # grpc.aio reads the replies through an async generator of the call's own, which holds the
            # call (and the call its request): left suspended after the last reply the caller wanted,
            # the pair outlives the request, a large body included (63 MiB a request, never freed).
            responses = getattr(call, "_message_aiter", None)
            if responses is not None:
                await responses.aclose()

    # ------------------------------------------------------------------ host
    async def version_info(self) -> pb.VersionInfo:
        info: pb.VersionInfo = await self._unary(self.host.Version, pb.Empty())
        return info

    async def info(self) -> BackendInfo:
        v = await self.version_info()
        return BackendInfo(
            kind=v.backend or self.kind,
            version=v.backend_version,
            url=self.target,
            extra={"olol_version": v.olol_version, "node_id": v.node_id, "settings": dict(v.settings)},
        )

    async def healthy(self) -> bool:
        try:
            return (await self.version_info()).healthy
        except OlolError:
            return False

    async def hardware(self) -> JSON:
        return convert.pb_to_json(await self._unary(self.host.Hardware, pb.Empty()))

    def watch_state(self, interval: float = 0.0) -> AsyncIterator[JSON]:
        """Host state snapshots (dicts with the `HostState` fields) as the agent streams them."""
        return self._stream(self.host.WatchState, pb.WatchRequest(interval_ms=int(interval * 1000)), convert.pb_to_json)

    # ------------------------------------------------------------------ inference
    def generate(self, request: JSON) -> AsyncIterator[JSON]:
        long = [name for name in _GENERATE_TEXTS if isinstance(request.get(name), str)
                and len(request[name]) >= PART_CHARS]
        if not long:
            return self._stream(
                self.inference.Generate, convert.generate_request_to_pb(request), convert.generate_chunk_from_pb
            )
        head = convert.generate_request_to_pb({**request, **dict.fromkeys(long, "")})
        parts = _generate_parts(head, [(_GENERATE_TEXTS[name], request[name]) for name in long])
        return self._in_parts(self.inference.GenerateParts, parts, self.inference.Generate,
                              lambda: convert.generate_request_to_pb(request), convert.generate_chunk_from_pb)

    def chat(self, request: JSON) -> AsyncIterator[JSON]:
        messages = request.get("messages")
        long = [i for i, m in enumerate(messages) if isinstance(m, dict) and isinstance(m.get("content"), str)
                and len(m["content"]) >= PART_CHARS] if isinstance(messages, list) else []
        if not long:
            return self._stream(self.inference.Chat, convert.chat_request_to_pb(request), convert.chat_chunk_from_pb)
        # Its long texts follow the request in slices: converted and encoded whole, a request would sit in
        # memory three more times (its protobuf, its encoding, gRPC's copy of that) beside the decoded body.
        assert isinstance(messages, list)
        head = {**request, "messages": [{**m, "content": ""} if i in long else m for i, m in enumerate(messages)]}
        parts = _chat_parts(convert.chat_request_to_pb(head), [(i, messages[i]["content"]) for i in long])
        return self._in_parts(self.inference.ChatParts, parts, self.inference.Chat,
                              lambda: convert.chat_request_to_pb(request), convert.chat_chunk_from_pb)

    async def _in_parts(self, method: Callable[..., Any], parts: Iterator[Any], whole_method: Callable[..., Any],
                        whole: Callable[[], Any], out: Callable[[Any], JSON]) -> AsyncIterator[JSON]:
        """A request sent in parts; to an agent older than that (UNIMPLEMENTED), the whole request."""
        stream = self._stream(method, parts, out)
        try:
            try:
                first = await anext(stream)
            except StopAsyncIteration:
                return
            except OlolError as exc:
                if exc.status != 501:
                    raise
                await stream.aclose()
                stream = self._stream(whole_method, whole(), out)
                first = await anext(stream)
            yield first
            async for chunk in stream:
                yield chunk
        finally:
            await stream.aclose()

    async def embed(self, request: JSON) -> JSON:
        resp = await self._unary(self.inference.Embed, convert.embed_request_to_pb(request))
        return convert.embed_response_from_pb(resp)

    # ------------------------------------------------------------------ models
    async def list_models(self) -> list[JSON]:
        resp = await self._unary(self.models.List, pb.Empty())
        return [convert.model_info_from_pb(m) for m in resp.models]

    async def running(self) -> list[JSON]:
        resp = await self._unary(self.models.Running, pb.Empty())
        return [convert.running_from_pb(m) for m in resp.models]

    async def show(self, request: JSON) -> JSON:
        req = pb.ShowRequest(
            model=str(request.get("model") or request.get("name") or ""), verbose=bool(request.get("verbose"))
        )
        return convert.show_from_pb(await self._unary(self.models.Show, req))

    def pull(self, request: JSON) -> AsyncIterator[JSON]:
        req = pb.PullRequest(
            model=str(request.get("model") or request.get("name") or ""), insecure=bool(request.get("insecure"))
        )
        return self._stream(self.models.Pull, req, convert.progress_from_pb)

    def push(self, request: JSON) -> AsyncIterator[JSON]:
        req = pb.PushRequest(
            model=str(request.get("model") or request.get("name") or ""), insecure=bool(request.get("insecure"))
        )
        return self._stream(self.models.Push, req, convert.progress_from_pb)

    def create(self, request: JSON) -> AsyncIterator[JSON]:
        return self._stream(self.models.Create, convert.create_request_to_pb(request), convert.progress_from_pb)

    async def copy(self, source: str, destination: str) -> None:
        await self._unary(self.models.Copy, pb.CopyRequest(source=source, destination=destination))

    async def delete(self, model: str) -> None:
        await self._unary(self.models.Delete, pb.DeleteRequest(model=model))

    async def has_blob(self, digest: str) -> bool:
        resp = await self._unary(self.models.HasBlob, pb.BlobRef(digest=digest))
        return bool(resp.exists)

    async def push_blob(self, digest: str, chunks: AsyncIterator[bytes]) -> None:
        async def messages() -> AsyncIterator[pb.BlobChunk]:
            yield pb.BlobChunk(digest=digest)
            async for data in chunks:
                # Stay well under the message limit whatever chunk size the caller reads.
                for i in range(0, len(data), 1 << 20):
                    yield pb.BlobChunk(data=data[i : i + (1 << 20)])

        await self._unary(self.models.PushBlob, messages())


# A generate request's texts that may be long, by their GenerateRequest field numbers.
_GENERATE_TEXTS = {"prompt": 2, "suffix": 3, "system": 5}


def _generate_parts(head: pb.GenerateRequest, texts: list[tuple[int, str]]) -> Iterator[pb.GeneratePart]:
    yield pb.GeneratePart(head=head)
    for number, text in texts:
        for start in range(0, len(text), SLICE_CHARS):
            yield pb.GeneratePart(text=pb.TextSlice(field=number, text=text[start : start + SLICE_CHARS]))


def _chat_parts(head: pb.ChatRequest, texts: list[tuple[int, str]]) -> Iterator[pb.ChatPart]:
    """The parts of a chat: its request, then each long text in slices (one slice in memory at a time)."""
    yield pb.ChatPart(head=head)
    for index, text in texts:
        for start in range(0, len(text), SLICE_CHARS):
            yield pb.ChatPart(text=pb.TextSlice(message=index, text=text[start : start + SLICE_CHARS]))
