"""Exact resumes: token ids travel with chunks from llama.cpp hosts, and only llama.cpp hosts get them back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from olol.backends.llamacpp.continuation import (
    TokenIds,
    as_chat_chunk,
    completion_prompt,
    plain_chat,
    template_messages,
)
from olol.cluster import Cluster
from olol.cluster.backend import JSON, Backend
from olol.cluster.routing import RouteRequest
from olol.errors import BackendUnavailable
from olol.proxy.admission import AdmissionQueue
from olol.proxy.dispatch import Dispatcher
from olol.proxy.metrics import ProxyMetrics
from olol.proxy.policies import Adaptive
from olol.proxy.resume import ResumableStream
from olol.proxy.router import Router
from olol.wire import convert
from olol.wire.tokens import RESUME_TOKENS, token_ids, with_token_ids
from tests.proxy.fakes import FakeBackend, host

CHAT: JSON = {"model": "llama3", "messages": [{"role": "user", "content": "hi"}], "options": {"num_predict": 8}}


class IdBackend(FakeBackend):
    """Says the id of each token, as a llama.cpp host does; `die_after` tokens then a reset."""

    def __init__(self, kind: str, die_after: int | None = None) -> None:
        super().__init__()
        self.kind = kind
        self.die_after = die_after
        self.requests: list[JSON] = []

    async def _chat(self, request: JSON) -> AsyncIterator[JSON]:
        self.requests.append(request)
        start = len(request.get(RESUME_TOKENS) or [])
        limit = request["options"]["num_predict"]
        for n in range(limit):
            if self.die_after is not None and n == self.die_after:
                raise BackendUnavailable("connection reset")
            chunk = {"model": "llama3", "message": {"role": "assistant", "content": f"w{start + n} "}, "done": False}
            yield with_token_ids(chunk, [100 + start + n]) if self.kind == "llamacpp" else chunk
        yield {"model": "llama3", "message": {"role": "assistant", "content": ""}, "done": True,
               "done_reason": "length", "eval_count": limit, "eval_duration": 1000}

    def chat(self, request: JSON) -> AsyncIterator[JSON]:
        return self._chat(request)


def chat_call(backend: Backend, body: JSON) -> AsyncIterator[JSON]:
    return backend.chat(body)


async def _run(first: IdBackend, second: IdBackend) -> tuple[list[JSON], ResumableStream]:
    a, b = host("a"), host("b")
    a.backend, b.backend, a.kind, b.kind, b.tier = first, second, first.kind, second.kind, 1
    cluster = Cluster([a, b])
    admission = AdmissionQueue(0.5)
    dispatcher = Dispatcher(cluster, Router(cluster, Adaptive(cluster.stats), admission),
                            ProxyMetrics(cluster, admission, None), first_byte_timeout=1.0, request_timeout=None,
                            max_attempts=3)
    upstream = await dispatcher.open_stream("chat", RouteRequest("llama3"), CHAT, chat_call)
    stream = ResumableStream(dispatcher, "chat", RouteRequest("llama3"), CHAT, "chat",
                             {"chat": chat_call, "generate": chat_call}, upstream, 2)
    try:
        return [c async for c in stream], stream
    finally:
        await stream.aclose()


async def test_a_llamacpp_host_continues_from_the_ids_relayed() -> None:
    first, second = IdBackend("llamacpp", die_after=3), IdBackend("llamacpp")
    chunks, stream = await _run(first, second)
    resumed = second.requests[0]
    assert resumed[RESUME_TOKENS] == [100, 101, 102] and resumed["options"]["num_predict"] == 5
    assert resumed["messages"][-1] == {"role": "assistant", "content": "w0 w1 w2 "}  # dropped by the host
    assert "".join(c["message"]["content"] for c in chunks) == "".join(f"w{n} " for n in range(8))
    assert chunks[-1]["eval_count"] == 8 and stream.resumes == 1


@pytest.mark.parametrize(("first_kind", "second_kind"), [("llamacpp", "ollama"), ("ollama", "llamacpp")])
async def test_ids_are_only_for_llamacpp_hosts_and_only_when_all_are_known(first_kind: str,
                                                                            second_kind: str) -> None:
    first, second = IdBackend(first_kind, die_after=3), IdBackend(second_kind)
    chunks, _ = await _run(first, second)
    resumed = second.requests[0]
    assert RESUME_TOKENS not in resumed  # an Ollama host, or ids nobody said: the text is the continuation
    assert resumed["messages"][-1]["content"] == "w0 w1 w2 "
    assert chunks[-1]["eval_count"] == 8


def test_token_ids_cross_the_agent_wire_beside_the_chunk_not_in_it() -> None:
    chunk = with_token_ids({"model": "m", "response": "hi", "done": False}, [7, 8])
    back = convert.generate_chunk_from_pb(convert.generate_chunk_to_pb(chunk))
    assert token_ids(back) == [7, 8] and "token_ids" not in back
    chat = with_token_ids({"model": "m", "message": {"role": "assistant", "content": "x"}, "done": False}, [9])
    assert token_ids(convert.chat_chunk_from_pb(convert.chat_chunk_to_pb(chat))) == [9]
    assert token_ids(convert.chat_chunk_from_pb(convert.chat_chunk_to_pb({**chat}))) is None
    request = {"model": "m", "messages": [{"role": "user", "content": "q"}], RESUME_TOKENS: [1, 2]}
    assert convert.chat_request_from_pb(convert.chat_request_to_pb(request))[RESUME_TOKENS] == [1, 2]
    generate = {"model": "m", "prompt": "p", RESUME_TOKENS: [3]}
    assert convert.generate_request_from_pb(convert.generate_request_to_pb(generate))[RESUME_TOKENS] == [3]
    assert RESUME_TOKENS not in convert.generate_request_from_pb(convert.generate_request_to_pb({"model": "m"}))


def test_llama_continuation_helpers() -> None:
    assert completion_prompt("<s>user: hi", {}) == "<s>user: hi"
    assert completion_prompt("<s>user: hi", {RESUME_TOKENS: [5, 6]}) == ["<s>user: hi", 5, 6]
    messages: list[Any] = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "w0"}]
    assert template_messages({"messages": messages, RESUME_TOKENS: [5]}) == messages[:1]
    assert template_messages({"messages": messages}) == messages  # a prefill without ids stays
    plain = {"messages": messages[:1]}
    assert plain_chat(plain, {"chat_template": "{{ messages }}"})
    assert not plain_chat({**plain, "tools": [{"type": "function"}]}, {})
    assert not plain_chat({**plain, "think": False}, {})
    assert not plain_chat(plain, {"chat_template": "{% if enable_thinking %}<think>{% endif %}"})
    ids = TokenIds()
    ids.take({"content": "", "tokens": [1]})  # half a UTF-8 character: no text yet
    ids.take({"content": "é", "tokens": [2]})
    assert token_ids(ids.attach({"response": "é"})) == [1, 2]
    chat = as_chat_chunk(with_token_ids({"model": "m", "created_at": "t", "response": "é", "done": False}, [1, 2]))
    assert chat == {"model": "m", "created_at": "t", "message": {"role": "assistant", "content": "é"}, "done": False}
    assert token_ids(chat) == [1, 2]
