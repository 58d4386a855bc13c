"""The tunnel's byte handling, without a worker: coalescing on the coordinator side, HELLO caps."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from olol._fast.framing import RpcCommand, encode_reply, encode_request, expects_reply
from olol.rpc.handshake import clear_hello_caps
from olol.split.tunnel import FLUSH_BYTES, LocalTunnel

# What llama-server sends per token, and once in a while a weight upload.
FRAMES = [
    encode_request(RpcCommand.SET_TENSOR, bytes(305)),
    encode_request(RpcCommand.GRAPH_RECOMPUTE, bytes(4)),
    encode_request(RpcCommand.GET_TENSOR, bytes(312)),
    encode_request(RpcCommand.BUFFER_CLEAR, bytes(9)),
    encode_request(RpcCommand.SET_TENSOR, bytes(FLUSH_BYTES + 1000)),
]


class ScriptedReader:
    """Returns the given chunks one read at a time, noting how much the tunnel had sent before each read."""

    def __init__(self, chunks: list[bytes], sent: list[int]) -> None:
        self.chunks = list(chunks)
        self.sent = sent  # bytes yielded so far (updated by the test)
        self.sent_before_read: list[int] = []

    async def read(self, n: int) -> bytes:
        self.sent_before_read.append(self.sent[0])
        return self.chunks.pop(0) if self.chunks else b""


def run(chunks: list[bytes]) -> tuple[list[bytes], list[int]]:
    tunnel = LocalTunnel(worker=None)  # type: ignore[arg-type]  # only _requests is used
    sent = [0]
    reader = ScriptedReader(chunks, sent)

    async def collect() -> list[bytes]:
        out = []
        async for message in tunnel._requests(reader, asyncio.Event()):  # type: ignore[arg-type]
            out.append(message.data)
            sent[0] += len(message.data)
        return out

    return asyncio.run(collect()), reader.sent_before_read


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(range(len(FRAMES))), min_size=1, max_size=12), st.data())
def test_coalescing_keeps_bytes_and_flushes_at_every_reply(order: list[int], data: Any) -> None:
    stream = b"".join(FRAMES[i] for i in order)
    cuts = sorted(data.draw(st.sets(st.integers(1, len(stream) - 1), max_size=8)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]

    messages, sent_before_read = run(chunks)

    assert b"".join(messages) == stream
    # Whenever a read completed a frame that expects a reply, everything read so far went out before the
    # next read: llama-server is waiting for that reply.
    ends, pos = [], 0
    for i in order:
        pos += len(FRAMES[i])
        if expects_reply(FRAMES[i][0]):
            ends.append(pos)
    consumed = 0
    for k, chunk in enumerate(chunks):
        before = consumed
        consumed += len(chunk)
        if any(before < end <= consumed for end in ends):
            assert sent_before_read[k + 1] == consumed
    # Fire-and-forget bursts travel together: no more messages than replies expected, big uploads and the end.
    assert len(messages) <= len(ends) + order.count(4) * 2 + 1


def test_hello_reply_caps_are_cleared_however_the_reply_is_cut() -> None:
    hello = encode_reply(bytes((7, 0, 0, 0)) + b"\xff" * 24)
    stream = hello + encode_reply(b"\x01\x00\x00\x00")
    expected = hello[:12] + bytes(24) + stream[36:]
    for cut in range(1, len(stream)):
        first, second = stream[:cut], stream[cut:]
        assert clear_hello_caps(first, 0) + clear_hello_caps(second, cut) == expected
