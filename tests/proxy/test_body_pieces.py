"""A body with long strings is written in pieces: the same bytes as encoding it whole, never whole in memory.

`olol.wire.raw.Pieces` encodes the frame once and each long string a slice at a time; the lean
HTTP/1.1 pool writes the pieces under the transport's flow control, with the exact Content-Length.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from olol.backends.ollama._http1 import HttpPool
from olol.backends.ollama.backend import _payload
from olol.wire import raw as wire_raw
from olol.wire.raw import JsonBody, Pieces, RawChunk
from tests.proxy.test_http1_client import fixed, serving


@pytest.fixture
def small_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire_raw, "LONG_STRING", 5)
    monkeypatch.setattr(wire_raw, "_SLICE", 3)  # slices end inside escapes and multi-byte characters


chars = st.characters(codec="utf-8") | st.sampled_from(['"', "\\", "\n", "\x00", "\x7f", "/", "é", "😀", "\u2028"])
values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(chars, max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(chars, max_size=8), inner, max_size=4),
    max_leaves=15,
)


# The fixture only patches module attributes: the same for every example.
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=values)
def test_pieces_join_to_orjsons_encoding_with_the_exact_length(small_slices: None, value: Any) -> None:
    pieces = Pieces.of(value)
    if pieces is None:
        assert not _has_long(value, 5)
        return
    joined = b"".join(pieces)
    assert joined == orjson.dumps(value)
    assert pieces.length == len(joined)
    assert b"".join(pieces) == joined  # iterated again (a retried request): the same bytes
    assert all(type(piece) is bytes for piece in pieces)


def _has_long(value: Any, threshold: int) -> bool:
    if isinstance(value, str):
        return len(value) >= threshold
    if isinstance(value, dict):
        return any(_has_long(v, threshold) for v in value.values())
    if isinstance(value, list):
        return any(_has_long(v, threshold) for v in value)
    return False


def test_what_orjson_cannot_encode_is_left_to_the_usual_encoder(small_slices: None) -> None:
    assert Pieces.of({"a": "long \ud800 string"}) is None  # a lone surrogate
    assert Pieces.of({"a": "long enough", "n": 2**70}) is None  # past 64 bits
    assert Pieces.of({"a": "tiny"}) is None  # nothing long: encoded whole


def test_a_large_body_is_sent_in_pieces_and_a_small_one_whole() -> None:
    small = JsonBody.wrap({"model": "m", "prompt": "hi"})
    assert _payload(small) == orjson.dumps(small)
    came = RawChunk.of({"model": "m", "prompt": "x" * 100_000}, b"exact bytes")
    assert _payload(came) == b"exact bytes"
    body = {"model": "m", "messages": [{"role": "user", "content": "é\n😀" * 100_000}]}
    for large in (JsonBody.wrap(body), body):
        pieces = _payload(large)
        assert isinstance(pieces, Pieces) and b"".join(pieces) == orjson.dumps(body)
    assert _payload({"n": 2**70}) == json.dumps({"n": 2**70}, separators=(",", ":")).encode()


async def test_the_pool_writes_pieces_with_their_length() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": 'a "document" é😀\n' * 400_000}]}
    pieces = Pieces.of(body)
    assert pieces is not None and pieces.length > 8 << 20  # well past the transport's buffer
    async with serving(fixed(200, b'{"done":true}'), fixed(200, b'{"done":true}')) as server:
        pool = HttpPool(server.url)
        for _ in range(2):  # the connection is reused after a body in pieces
            resp = await pool.post("/api/chat", pieces)
            assert resp.status == 200 and await resp.read() == b'{"done":true}'
            resp.close()
        pool.close()
    assert server.connections == 1
    for request in server.requests:
        head, _, sent = request.partition(b"\r\n\r\n")
        assert f"Content-Length: {pieces.length}".encode() in head
        assert sent == orjson.dumps(body)


async def test_a_reply_before_the_whole_body_stops_the_writing() -> None:
    served = asyncio.Event()
    connections = 0

    async def answer_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b'HTTP/1.1 413 X\r\nContent-Length: 17\r\n\r\n{"error":"large"}')
        await writer.drain()
        await served.wait()  # reads nothing more: the client must not wait for the body to go
        writer.close()

    listener = await asyncio.start_server(answer_at_once, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    pieces = Pieces.of({"content": "x" * (64 << 20)})
    assert pieces is not None
    pool = HttpPool(f"http://127.0.0.1:{port}")
    try:
        resp = await asyncio.wait_for(pool.post("/api/chat", pieces), 10)
        assert resp.status == 413 and await resp.read() == b'{"error":"large"}'
        resp.close()
        assert not pool._idle  # out of step with its request: not reused
    finally:
        served.set()
        pool.close()
        listener.close()
