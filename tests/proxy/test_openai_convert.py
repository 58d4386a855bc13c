"""Translation between the OpenAI-compatible API and the native one."""

from __future__ import annotations

import base64
import struct

import pytest

from olol.errors import BadRequest
from olol.proxy.openai import requests as oai_in
from olol.proxy.openai import responses as oai_out


def test_chat_request_maps_options_format_and_images() -> None:
    native = oai_in.chat_request({
        "model": "m", "stream": True, "temperature": 0.2, "max_tokens": 5, "stop": "\n", "seed": 7,
        "response_format": {"type": "json_object"},
        "messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": [{"type": "text", "text": "look"},
                                         {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}}]},
        ],
    })
    assert native["options"] == {"temperature": 0.2, "num_predict": 5, "stop": ["\n"], "seed": 7}
    assert native["format"] == "json" and native["stream"] is True
    assert native["messages"][1] == {"role": "user", "content": "look", "images": ["QUJD"]}


def test_chat_request_tool_round_trip() -> None:
    native = oai_in.chat_request({"model": "m", "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ], "tools": [{"type": "function", "function": {"name": "get_weather"}}]})
    assert native["messages"][1]["tool_calls"] == [{"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]
    assert native["messages"][2] == {"role": "tool", "content": "sunny", "tool_name": "get_weather"}
    assert native["tools"][0]["function"]["name"] == "get_weather"


def test_json_schema_format_and_remote_images_rejected() -> None:
    schema = {"type": "object"}
    native = oai_in.chat_request({"model": "m", "messages": [{"role": "user", "content": "x"}],
                                  "response_format": {"type": "json_schema", "json_schema": {"schema": schema}}})
    assert native["format"] == schema
    with pytest.raises(BadRequest):
        oai_in.chat_request({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/x.png"}}]}]})


def test_chat_completion_and_stream_chunks() -> None:
    final = {"model": "m", "message": {"role": "assistant", "content": "hi"}, "done": True, "done_reason": "length",
             "prompt_eval_count": 3, "eval_count": 2}
    reply = oai_out.chat_completion(final, "chatcmpl-1", 10)
    assert reply["choices"][0] == {"index": 0, "message": {"role": "assistant", "content": "hi"},
                                   "finish_reason": "length"}
    assert reply["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    state = oai_out.ChatStreamState("chatcmpl-1", 10, include_usage=True)
    first = state.chunks({"model": "m", "message": {"role": "assistant", "content": "h"}, "done": False})
    assert first[0]["choices"][0]["finish_reason"] is None and first[0]["object"] == "chat.completion.chunk"
    last = state.chunks(final)
    assert last[0]["choices"][0]["finish_reason"] == "length"
    assert last[1]["choices"] == [] and last[1]["usage"]["total_tokens"] == 5


def test_tool_calls_become_openai_shaped() -> None:
    final = {"model": "m", "done": True, "message": {"role": "assistant", "content": "",
             "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]}}
    msg = oai_out.chat_completion(final, "c", 1)["choices"][0]
    assert msg["finish_reason"] == "tool_calls"
    assert msg["message"]["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"a": 1}'}


def test_completion_request_and_reply() -> None:
    native = oai_in.completion_request({"model": "m", "prompt": ["once"], "max_tokens": 3})
    assert native == {"model": "m", "prompt": "once", "stream": False, "options": {"num_predict": 3}}
    reply = oai_out.completion({"model": "m", "response": "upon", "done": True, "done_reason": "stop"}, "cmpl-1", 1)
    assert reply["choices"][0]["text"] == "upon" and reply["object"] == "text_completion"


def test_embeddings_float_and_base64() -> None:
    native = oai_in.embed_request({"model": "m", "input": "x", "dimensions": 2})
    assert native == {"model": "m", "input": ["x"], "dimensions": 2}
    reply = {"model": "m", "embeddings": [[0.5, -1.0]], "prompt_eval_count": 1}
    assert oai_out.embeddings(reply, "m", None)["data"][0]["embedding"] == [0.5, -1.0]
    encoded = oai_out.embeddings(reply, "m", "base64")["data"][0]["embedding"]
    assert struct.unpack("<2f", base64.b64decode(encoded)) == (0.5, -1.0)
    with pytest.raises(BadRequest):
        oai_in.embed_request({"model": "m", "input": [[1, 2]]})


def test_error_body_types() -> None:
    assert oai_out.error_body(404, "nope") == {
        "error": {"message": "nope", "type": "not_found_error", "param": None, "code": None}}
    assert oai_out.error_body(400, "bad")["error"]["type"] == "invalid_request_error"
    assert oai_out.error_body(503, "busy")["error"]["type"] == "api_error"


def test_model_object() -> None:
    obj = oai_out.model_object({"name": "me/mine:latest", "modified_at": "2024-05-01T10:00:00.123456789-07:00"})
    assert obj == {"id": "me/mine:latest", "object": "model", "created": 1714582800, "owned_by": "me"}
