"""A large body (read into an mmap by the gate) decodes to what a small one would, with the same errors.

`parse_body` takes an mmap down `olol.proxy.api.large_body`: long literals decoded apart from the
frame. Each case compares it with `parse_body` of the same bytes as `bytes` (today's whole-body
path), on both implementations of `olol._fast.longstr`. The thresholds are lowered so that short
bodies take the large path.
"""

from __future__ import annotations

import json
import mmap
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from olol._fast import compiled, pure
from olol.proxy.api import bodies, large_body
from olol.proxy.api.bodies import CHAT, InvalidBody, parse_body
from tests.proxy.helpers import proxy_over


def _twins() -> list[Any]:
    module = compiled("longstr")
    built = pytest.mark.skipif(module is None, reason="not built")
    return [pytest.param(pure("longstr"), id="pure"), pytest.param(module, id="compiled", marks=built)]


@pytest.fixture(params=_twins())
def small_thresholds(request: pytest.FixtureRequest) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(large_body, "decode", request.param.decode)
        patch.setattr(large_body, "find_long", request.param.find_long)
        patch.setattr(large_body, "LONG_LITERAL", 12)  # above the keys' lengths
        patch.setattr(large_body, "_FRAME_SHARE", 1)  # any frame: these bodies are mostly frame
        yield


def _mapped(data: bytes) -> mmap.mmap:
    buffer = mmap.mmap(-1, max(1, len(data)))
    buffer[: len(data)] = data
    return buffer


def _outcome(data: bytes | mmap.mmap, spec: Any = None) -> tuple[str, Any]:
    try:
        return "ok", parse_body(data, spec)
    except InvalidBody as exc:
        return "error", (str(exc), exc.status)


chars = st.characters(codec="utf-8") | st.sampled_from(['"', "\\", "\n", "\x01", "😀", "é"])
texts = st.text(chars, max_size=8) | st.text(chars, min_size=12, max_size=40)  # short ones, and long
values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=15,
)


# The fixture only patches module attributes: the same for every example.
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=values, ascii_only=st.booleans())
def test_random_bodies_decode_as_json_loads_does(small_thresholds: None, value: Any, ascii_only: bool) -> None:
    data = json.dumps(value, ensure_ascii=ascii_only).encode()
    kind, body = _outcome(_mapped(data))
    assert (kind, body) == _outcome(data)
    if kind == "ok":
        assert body == json.loads(data)


BROKEN = [
    b'{"model": "m", "messages": [{"role": "user", "content": "abcdefgh\\ud800ijklmnop"}]}',  # lone surrogate
    b'{"model": "m", "messages": [{"role": "user", "content": "abcdefgh\xed\xa0\x80ijklmnop"}]}',  # encoded surrogate
    b'{"model": "m", "messages": [{"role": "user", "content": "abcdefgh\xffijklmnop"}]}',  # not UTF-8
    b'{"model": "m", "messages": [{"role": "user", "content": "abcdefgh\\qijklmnop"}]}',  # bad escape
    b'{"model": "m", "messages": [{"role": "user", "content": "abcdefgh\x01ijklmnop"}]}',  # control character
    b'{"model": "m", "messages": [{"role": "user", "content": "abcdefghijklmnop"} "x"]}',  # the frame is malformed
    b'{"model": "m", "messages": [{"role": "user", "content": "abcdefghijklmnop',  # cut short
    b'{"model": "m", "messages": NaN, "x": "abcdefghijklmnop"}',
    b'{"model": "m", "a-long-key-indeed": 1}',  # a long key
    b'{"model": "m", "messages": [{"role": "user", "content": "abcdefghijklmnopq"}], "stream": "abcdefghijklmnopq"}',
    b'["abcdefghijklmnop", 1]',
    b'"abcdefghijklmnopqrst"',
    b"   \n ",
    b'{"model": "m", "messages": [{"role": "user", "content": "abcdefghijklmnop"}]} x',
]


@pytest.mark.parametrize("data", BROKEN)
def test_errors_are_worded_as_for_a_small_body(small_thresholds: None, data: bytes) -> None:
    assert _outcome(_mapped(data), CHAT) == _outcome(data, CHAT)


def test_a_client_string_equal_to_a_placeholder_is_taken_as_it_is(small_thresholds: None) -> None:
    placeholder = large_body._placeholder(0)
    data = json.dumps({"model": "m", "a": "long enough, and more", "b": placeholder}).encode()
    assert parse_body(_mapped(data), None) == json.loads(data)


def test_the_gate_thresholds_take_a_real_large_body_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[int] = []
    real = large_body.decode

    def spy(data: Any, spans: Any, release: bool = False) -> Any:
        decoded.append(len(spans))
        return real(data, spans, release)

    monkeypatch.setattr(large_body, "decode", spy)
    content = "é😀\n" * 100_000 + "x" * 300_000
    data = json.dumps({"model": "m", "messages": [{"role": "user", "content": content}]}, ensure_ascii=False).encode()
    assert parse_body(_mapped(data), CHAT) == json.loads(data)
    assert decoded == [1]
    decoded.clear()
    many = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * 100}] * 20_000}).encode()
    assert parse_body(_mapped(many), CHAT) == json.loads(many)  # no long literal: decoded whole
    assert decoded == []


async def test_a_large_body_reaches_the_host_intact_and_a_broken_one_gets_ollamas_words(ollama_sim) -> None:  # type: ignore[no-untyped-def]
    content = ('a document é😀 "quoted" \\ \n' * 60_000) + "end"
    good = json.dumps({"model": "llama3.2", "messages": [{"role": "user", "content": content}], "stream": False},
                      ensure_ascii=False).encode()  # fmt: skip
    bad = good.replace(b"end", b"\\ud800")
    assert len(good) > 1 << 20  # the gate's large path
    async with proxy_over(ollama_sim) as proxy, aiohttp.ClientSession() as http:
        headers = {"Content-Type": "application/json"}
        async with http.post(proxy.url + "/api/chat", data=good, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
        async with http.post(proxy.url + "/api/chat", data=bad, headers=headers) as resp:
            assert resp.status == 400
            assert (await resp.json()) == {"error": _outcome(bad, CHAT)[1][0]}
    sent = [r.body for r in ollama_sim.request_log if r.path == "/api/chat"]
    assert len(sent) == 1 and sent[0]["messages"] == [{"role": "user", "content": content}]


def test_loads_of_an_mmap_closes_it() -> None:
    buffer = _mapped(b'{"a": 1}')
    assert bodies._loads(buffer) == {"a": 1}
    assert buffer.closed
