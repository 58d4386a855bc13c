"""Long JSON string literals: found in a document's bytes and decoded exactly as `json.loads` decodes them.

Every case runs on both implementations. Decoding must agree with the standard library on every
literal it takes, and take nothing the proxy's usual decoding refuses (so its error words stay).
"""

from __future__ import annotations

import json
import mmap
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fast.conftest import implementations


@pytest.fixture(scope="module", params=implementations("longstr"))
def longstr(request: pytest.FixtureRequest) -> ModuleType:
    module: ModuleType = request.param
    return module


# Text with what makes decoding hard: escapes, control characters, quotes, backslashes, non-ASCII, emoji.
texts = st.text(
    st.characters(codec="utf-8")
    | st.sampled_from(['"', "\\", "\n", "\x00", "\x1f", "\x7f", "/", "é", "€", "😀", "\u2028", "\ufffd"]),
    max_size=80,
)
values = st.recursive(
    st.none() | st.booleans() | st.integers() | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


def _literals(value: object, threshold: int, ascii_only: bool) -> list[str]:
    """The strings (values, not keys) at least `threshold` bytes long once encoded, in document order."""
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, str):
            if len(json.dumps(node, ensure_ascii=ascii_only).encode()) - 2 >= threshold:
                found.append(node)
        elif isinstance(node, dict):
            for item in node.values():
                walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(value)
    return found


@settings(max_examples=300, deadline=None)
@given(value=values, ascii_only=st.booleans(), threshold=st.integers(1, 12), indent=st.sampled_from([None, 1]))
def test_found_and_decoded_as_json_loads_does(
    longstr: ModuleType, value: object, ascii_only: bool, threshold: int, indent: int | None
) -> None:
    data = json.dumps(value, ensure_ascii=ascii_only, indent=indent).encode()
    spans = longstr.find_long(data, threshold)
    expected = _literals(value, threshold, ascii_only)
    long_keys = isinstance(value, dict | list) and any(
        len(json.dumps(k, ensure_ascii=ascii_only).encode()) - 2 >= threshold for k in _keys(value)
    )
    if long_keys:
        return  # may be None (a long key): covered below
    assert spans is not None
    assert [json.loads(b'"' + data[start:end] + b'"') for start, end in spans] == expected
    assert longstr.decode(data, spans) == expected


def _keys(value: object) -> list[str]:
    if isinstance(value, dict):
        return [*value, *(k for v in value.values() for k in _keys(v))]
    if isinstance(value, list):
        return [k for v in value for k in _keys(v)]
    return []


def test_long_text_in_an_mmap_released_as_it_is_decoded(longstr: ModuleType) -> None:
    # Several release steps long, with escapes and every UTF-8 width on both sides of each step.
    text = ('abc\\"\n\t\u00e9\u20ac\U0001f600 ' * 70_000) + "end"
    ascii_text = "plain base64/like+text=" * 150_000
    escaped = 'line\n"quoted"\\ \u0001' * 200_000  # ASCII with escapes: the copied runs end at each
    body = {"a": text, "b": [ascii_text, "short"], "c": "é" * 3_000_000, "d": escaped}
    data = json.dumps(body, ensure_ascii=False).encode()
    buffer = mmap.mmap(-1, len(data))
    buffer[:] = data
    spans = longstr.find_long(buffer, 1 << 16)
    assert spans is not None and len(spans) == 4
    assert longstr.decode(buffer, spans, release=True) == [text, ascii_text, "é" * 3_000_000, escaped]
    buffer.close()


@pytest.mark.parametrize(
    "literal",
    [
        b"\\ud800",  # lone high surrogate
        b"\\udc00",  # lone low surrogate
        b"\\ud800\\u0041",  # high surrogate, then no low one
        b"\\ud800x",
        b"\\x41",  # not a JSON escape
        b"\\u12",  # too short
        b"\\u12g4",
        b"a\x01b",  # a raw control character
        b"tab\there",
        b"\xff",  # not UTF-8
        b"\xc0\x80",  # overlong
        b"\xe0\x80\x80",  # overlong
        b"\xed\xa0\x80",  # a surrogate encoded in UTF-8
        b"\xf4\x90\x80\x80",  # past U+10FFFF
        b"\xe2\x82",  # cut short
        b"end\\",
    ],
)
def test_what_the_proxy_refuses_is_not_decoded(longstr: ModuleType, literal: bytes) -> None:
    data = b'{"x": "ab' + literal + b'"}'
    spans = longstr.find_long(data, 2)
    if spans is None:  # `end\` escapes its closing quote: the literal never ends
        assert literal.endswith(b"\\")
        return
    assert longstr.decode(data, spans) is None
    assert longstr.decode(data, [(0, 0), *spans]) is None  # one bad literal spoils the lot


def test_surrogate_pairs_and_every_escape_decode(longstr: ModuleType) -> None:
    data = b'["\\ud83d\\ude00 \\u00e9\\u0000 \\"\\\\\\/\\b\\f\\n\\r\\t \xf0\x9f\x98\x80\x7f"]'
    spans = longstr.find_long(data, 1)
    assert longstr.decode(data, spans) == json.loads(data)


def test_long_keys_and_unterminated_literals_are_not_split(longstr: ModuleType) -> None:
    assert longstr.find_long(b'{"' + b"k" * 20 + b'" : 1}', 10) is None
    assert longstr.find_long(b'{"' + b"k" * 20 + b'"\n:1}', 10) is None
    assert longstr.find_long(b'{"k": "' + b"v" * 20, 10) is None
    assert longstr.find_long(b'{"k": "v\\"' + b"v" * 20, 10) is None
    assert longstr.find_long(b'{"k": "vvv", "w": 1}', 10) == []
    assert longstr.find_long(b'{"k": "' + b"v" * 20 + b'"}', 10) == [(7, 27)]
    assert longstr.find_long(b"", 1) == []


def test_has_long(longstr: ModuleType) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x" * 10}], "n": 3, "images": [None, "y" * 5]}
    assert longstr.has_long(body, 10) and longstr.has_long([body], 10)
    assert not longstr.has_long(body, 11)
    assert longstr.has_long({"images": ["y" * 12]}, 12)
    assert not longstr.has_long({"k" * 20: 1}, 10)  # keys are not what a body's size is made of
    assert not longstr.has_long(42, 1) and longstr.has_long("abc", 3)
