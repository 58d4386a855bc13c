"""ggml RPC framing: the protocol table, chunk-boundary independence, validation, regrouping."""

from __future__ import annotations

import itertools
import random
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from olol._fast._framing_py import Frame, FrameParser
from olol._fast._rpc_proto import (
    COMMAND_COUNT,
    EXPECTS_REPLY,
    REPLY_SIZE,
    REQUEST_MIN_SIZE,
    REQUEST_SIZE,
    UNTRACKED,
    FrameLike,
    FramingError,
    RpcCommand,
    encode_reply,
    encode_request,
    expects_reply,
    regroup,
)
from tests.fast.conftest import both, needs_compiled

BIG = 1 << 30
NO_REPLY = {
    "FREE_BUFFER",
    "BUFFER_CLEAR",
    "MEMSET_TENSOR",
    "SET_TENSOR",
    "INIT_TENSOR",
    "GRAPH_COMPUTE",
    "GRAPH_RECOMPUTE",
}


def test_command_table_matches_protocol_7() -> None:
    assert [int(c) for c in RpcCommand] == list(range(18))
    assert (RpcCommand(14).name, RpcCommand(15).name, RpcCommand(17).name) == ("HELLO", "DEVICE_COUNT", "MEMSET_TENSOR")
    assert COMMAND_COUNT == 18  # 18 is RPC_CMD_NONE, never on the wire
    assert {c.name for c in RpcCommand if not expects_reply(c)} == NO_REPLY
    assert REQUEST_SIZE[RpcCommand.HELLO] == 24 and REPLY_SIZE[RpcCommand.HELLO] == 28
    assert REQUEST_SIZE[RpcCommand.DEVICE_COUNT] == 0 and REPLY_SIZE[RpcCommand.DEVICE_COUNT] == 4
    assert REQUEST_SIZE[RpcCommand.GET_DEVICE_MEMORY] == 4 and REPLY_SIZE[RpcCommand.GET_DEVICE_MEMORY] == 16
    with pytest.raises(ValueError):
        expects_reply(18)


def payload_for(cmd: int, extra: int, seed: int) -> bytes:
    size = REQUEST_SIZE[cmd] if REQUEST_SIZE[cmd] >= 0 else REQUEST_MIN_SIZE[cmd] + extra
    return random.Random(seed).randbytes(size)


request_frames = st.lists(
    st.tuples(st.sampled_from(list(RpcCommand)), st.integers(0, 700), st.integers(0, 2**32)), max_size=12
)


def encode_all(frames: list[tuple[RpcCommand, int, int]]) -> tuple[bytes, list[tuple[int, bytes]]]:
    parts = [(int(cmd), encode_request(cmd, payload_for(cmd, extra, seed))) for cmd, extra, seed in frames]
    return b"".join(raw for _, raw in parts), parts


def feed_in_pieces(parser: FrameParser, stream: bytes, cuts: list[int], kind: str) -> list[Frame]:
    """Feed `stream` cut at `cuts`, as bytes, a read-only view, or a reused (then scribbled) buffer."""
    out: list[Frame] = []
    bounds = [0, *sorted(set(cuts)), len(stream)]
    scratch = bytearray(len(stream) + 1)
    for a, b in itertools.pairwise(bounds):
        piece = stream[a:b]
        if kind == "bytes":
            out += parser.feed(piece)
        elif kind == "view":
            out += parser.feed(memoryview(piece))
        else:
            view = memoryview(scratch)[: b - a]
            view[:] = piece
            out += parser.feed(view)
            view[:] = b"\xee" * (b - a)  # the caller reuses its buffer: frames must not see this
    return out


@settings(max_examples=150, deadline=None)
@given(frames=request_frames, data=st.data(), kind=st.sampled_from(["bytes", "view", "reused"]))
def test_any_chunking_gives_the_same_frames(
    framing: ModuleType, frames: list[tuple[RpcCommand, int, int]], data: st.DataObject, kind: str
) -> None:
    stream, parts = encode_all(frames)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    parser = framing.FrameParser("request", BIG)
    got = feed_in_pieces(parser, stream, cuts, kind)
    assert [(f.cmd, bytes(f.raw)) for f in got] == parts
    assert all(bytes(f.payload) == raw[9:] and f.size == len(raw) - 9 for f, (_, raw) in zip(got, parts, strict=True))
    assert all(f.raw.readonly and f.payload.readonly for f in got)
    assert parser.buffered == 0
    stats = parser.stats
    assert (stats.frames, stats.bytes) == (len(parts), len(stream))
    for cmd in {c for c, _ in parts}:
        name = RpcCommand(cmd).name
        assert stats.commands[name] == sum(1 for c, _ in parts if c == cmd)
        assert stats.command_bytes[name] == sum(len(r) for c, r in parts if c == cmd)


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(st.binary(max_size=64), max_size=8), direction=st.sampled_from(["request", "reply"]))
def test_random_bytes_only_raise_framing_error(framing: ModuleType, chunks: list[bytes], direction: str) -> None:
    parser = framing.FrameParser(direction, 4096)
    if direction == "reply":
        parser.expect(RpcCommand.GET_TENSOR)
    failed = False
    for chunk in chunks:
        try:
            parser.feed(chunk)
        except FramingError:
            failed = True
            break
    if failed:  # once broken, always broken: the stream cannot be resynchronised
        with pytest.raises(FramingError, match="failed earlier"):
            parser.feed(b"")


def test_bytes_input_is_not_copied(framing: ModuleType) -> None:
    stream = encode_request(RpcCommand.GET_ALIGNMENT, b"\0" * 4) + encode_request(RpcCommand.SET_TENSOR, bytes(400))
    frames = framing.FrameParser("request", BIG).feed(stream)
    assert [f.raw.obj is stream for f in frames] == [True, True]


def test_frame_spanning_chunks_is_assembled_once(framing: ModuleType) -> None:
    payload = bytes(range(256)) * 40
    stream = encode_request(RpcCommand.SET_TENSOR, payload)
    parser = framing.FrameParser("request", BIG)
    assert parser.feed(stream[:5]) == []
    assert parser.buffered == 5
    assert parser.feed(stream[5:100]) == []
    assert parser.buffered == 100
    (frame,) = parser.feed(stream[100:])
    assert bytes(frame.payload) == payload and frame.cmd == RpcCommand.SET_TENSOR
    assert len(frame.raw.obj) == len(stream)  # a buffer of exactly the frame's size


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (b"\x12" + bytes(8), "unknown ggml RPC command 18"),  # RPC_CMD_NONE never travels
        (b"\xff" + bytes(8), "unknown ggml RPC command 255"),
        (encode_request(RpcCommand.GET_ALIGNMENT, bytes(5)), "GET_ALIGNMENT payload must be 4 bytes, got 5"),
        (encode_request(RpcCommand.SET_TENSOR, bytes(304)), "SET_TENSOR payload must be at least 305 bytes"),
        (encode_request(RpcCommand.GRAPH_COMPUTE, bytes(8)), "at least 12 bytes"),
        (b"\x06" + (2**64 - 1).to_bytes(8, "little"), "exceeds max_payload"),
    ],
)
def test_invalid_requests(framing: ModuleType, stream: bytes, message: str) -> None:
    good = encode_request(RpcCommand.DEVICE_COUNT)
    parser = framing.FrameParser("request", 1 << 20)
    with pytest.raises(FramingError, match=message) as info:
        parser.feed(good + stream)
    assert "stream offset 9" in str(info.value)
    assert [f.cmd for f in info.value.frames] == [RpcCommand.DEVICE_COUNT]  # frames before the error survive


def test_oversize_is_rejected_before_the_payload_arrives(framing: ModuleType) -> None:
    parser = framing.FrameParser("request", 1000)
    parser.feed(b"\x06")
    with pytest.raises(FramingError, match="SET_TENSOR payload of 1001 bytes"):
        parser.feed((1001).to_bytes(8, "little"))
    assert framing.FrameParser("request", 1000).feed(encode_request(RpcCommand.SET_TENSOR, bytes(1000)))


def test_handshake(framing: ModuleType) -> None:
    hello = encode_request(RpcCommand.HELLO, bytes(24))
    count = encode_request(RpcCommand.DEVICE_COUNT)
    assert len(framing.FrameParser("request", BIG, handshake=True).feed(hello + count)) == 2
    with pytest.raises(FramingError, match="DEVICE_COUNT before HELLO"):
        framing.FrameParser("request", BIG, handshake=True).feed(count)
    with pytest.raises(FramingError, match="repeated HELLO"):
        framing.FrameParser("request", BIG, handshake=True).feed(hello + hello)
    assert len(framing.FrameParser("request", BIG).feed(count + hello + hello)) == 3
    with pytest.raises(ValueError):
        framing.FrameParser("reply", BIG, handshake=True)


def test_replies_are_tagged_and_checked(framing: ModuleType) -> None:
    parser = framing.FrameParser("reply", BIG)
    parser.expect(RpcCommand.HELLO)
    parser.expect(RpcCommand.GET_TENSOR)
    assert parser.pending_replies == 2
    stream = encode_reply(bytes(28)) + encode_reply(b"x" * 1000) + encode_reply(b"??")
    frames = []
    for i in range(0, len(stream), 3):
        frames += parser.feed(stream[i : i + 3])
    assert [(f.cmd, f.size) for f in frames] == [(RpcCommand.HELLO, 28), (RpcCommand.GET_TENSOR, 1000), (UNTRACKED, 2)]
    assert parser.stats.commands == {"GET_TENSOR": 1, "HELLO": 1, "UNTRACKED": 1}
    assert parser.pending_replies == 0

    parser = framing.FrameParser("reply", BIG)
    parser.expect(RpcCommand.GET_DEVICE_MEMORY)
    with pytest.raises(FramingError, match="GET_DEVICE_MEMORY reply must be 16 bytes, got 8"):
        parser.feed(encode_reply(bytes(8)))
    with pytest.raises(ValueError, match="has no reply"):
        framing.FrameParser("reply", BIG).expect(RpcCommand.SET_TENSOR)
    with pytest.raises(ValueError, match="reply parsers"):
        framing.FrameParser("request", BIG).expect(RpcCommand.HELLO)


def test_bad_arguments(framing: ModuleType) -> None:
    with pytest.raises(ValueError):
        framing.FrameParser("sideways", BIG)
    with pytest.raises(ValueError):
        framing.FrameParser("request", -1)


def test_every_command_round_trips(framing: ModuleType) -> None:
    stream, parts = encode_all([(cmd, 3, int(cmd)) for cmd in RpcCommand])
    frames = framing.FrameParser("request", BIG).feed(stream)
    assert [(f.cmd, bytes(f.raw)) for f in frames] == parts
    assert sum(EXPECTS_REPLY) == len(RpcCommand) - len(NO_REPLY)


@settings(max_examples=150, deadline=None)
@given(frames=request_frames, limit=st.integers(9, 5000))
def test_regroup(framing: ModuleType, frames: list[tuple[RpcCommand, int, int]], limit: int) -> None:
    stream, parts = encode_all(frames)
    parsed = framing.FrameParser("request", BIG).feed(stream)
    chunks = regroup(parsed, limit)
    assert b"".join(chunks) == stream
    assert all(0 < len(c) <= limit for c in chunks)
    starts = [0, *itertools.accumulate(len(raw) for _, raw in parts)]
    size_at = {start: len(raw) for start, (_, raw) in zip(starts, parts, strict=False)}
    big = [(start, start + size) for start, size in size_at.items() if size > limit]
    pos = 0
    for chunk in chunks[:-1]:
        pos += len(chunk)
        if pos in size_at:
            # Cut between frames only because the next one did not fit (greedy packing).
            assert len(chunk) + size_at[pos] > limit
        else:
            # Otherwise only inside a frame too big for any chunk.
            assert any(a < pos < b for a, b in big)
    with pytest.raises(ValueError):
        regroup(parsed, 0)


def test_regroup_packs_greedily() -> None:
    class F:
        def __init__(self, n: int) -> None:
            self.raw = memoryview(bytes([n]) * n)

    assert [len(c) for c in regroup([F(3), F(3), F(3)], 7)] == [6, 3]
    # The big frame fills the current chunk and splits; small frames stay whole.
    assert [len(c) for c in regroup([F(3), F(20), F(2)], 8)] == [8, 8, 7, 2]


@needs_compiled("framing")
@settings(max_examples=100, deadline=None)
@given(frames=request_frames, data=st.data())
def test_compiled_matches_twin(frames: list[tuple[RpcCommand, int, int]], data: st.DataObject) -> None:
    twin, compiled = both("framing")
    stream, _ = encode_all(frames)
    stream += data.draw(st.binary(max_size=20))  # maybe a bad tail: both must fail the same way
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    results = []
    for module in (twin, compiled):
        parser = module.FrameParser("request", 4096)
        got: list[FrameLike]
        try:
            got, error = list(feed_in_pieces(parser, stream, cuts, "bytes")), None
        except FramingError as exc:
            got, error = exc.frames, str(exc)
        results.append(([(f.cmd, bytes(f.raw)) for f in got], error, parser.buffered, parser.stats))
    assert results[0] == results[1]
