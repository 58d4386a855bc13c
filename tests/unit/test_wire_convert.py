"""Ollama JSON survives the trip through protobuf, and bad input fails as Ollama fails."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from olol.errors import BadRequest
from olol.proto import pb
from olol.wire import convert
from olol.wire.values import duration_from_json, duration_to_json, rfc3339_from_ns, rfc3339_to_ns

IMG = base64.b64encode(b"\x89PNG fake image bytes").decode()


def test_generate_request_round_trip_keeps_every_field() -> None:
    body = {
        "model": "llama3.2",
        "prompt": "Why is the sky blue?",
        "suffix": "END",
        "system": "be brief",
        "template": "{{ .Prompt }}",
        "raw": True,
        "images": [IMG],
        "format": {"type": "object"},
        "options": {
            "temperature": 0.5,
            "num_ctx": 4096,
            "stop": ["\n"],
            "seed": 42,
            "use_mmap": False,
            "my_custom": {"a": 1},
        },
        "keep_alive": "5m",
        "think": "high",
        "context": [1, 2, 3],
    }
    msg = convert.generate_request_to_pb(body)
    assert msg.options.num_ctx == 4096 and isinstance(msg.options.num_ctx, int)
    assert msg.keep_alive == 300 * 10**9
    assert msg.images[0] == base64.b64decode(IMG)
    back = convert.generate_request_from_pb(pb.GenerateRequest.FromString(msg.SerializeToString()))
    assert back["keep_alive"] == 300
    assert back["options"] == body["options"]
    for key in ("model", "prompt", "suffix", "system", "template", "raw", "images", "format", "think", "context"):
        assert back[key] == body[key], key


def test_chat_request_with_tools_and_tool_calls() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "weather?", "images": [IMG]},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}}],
            },
            {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "d",
                    "parameters": {"type": "object", "required": ["city"]},
                },
            }
        ],
        "format": "json",
        "think": True,
        "keep_alive": -1,
    }
    back = convert.chat_request_from_pb(convert.chat_request_to_pb(body))
    assert back["messages"] == body["messages"]  # integer 3 stays an integer
    assert back["tools"] == body["tools"]
    assert back["format"] == "json" and back["think"] is True and back["keep_alive"] == -1


def test_final_chunk_round_trip_keeps_stats() -> None:
    final = {
        "model": "m",
        "created_at": "2024-05-01T10:00:00.123456789Z",
        "response": "",
        "done": True,
        "done_reason": "length",
        "context": [5],
        "total_duration": 10,
        "load_duration": 1,
        "prompt_eval_count": 3,
        "prompt_eval_duration": 2,
        "eval_count": 7,
        "eval_duration": 5,
    }
    assert convert.generate_chunk_from_pb(convert.generate_chunk_to_pb(final)) == final
    chat = {
        "model": "m",
        "created_at": "2024-05-01T10:00:00Z",
        "message": {"role": "assistant", "content": "hi"},
        "done": False,
    }
    assert convert.chat_chunk_from_pb(convert.chat_chunk_to_pb(chat)) == chat


def test_cached_prompt_tokens_cross_the_wire_only_when_reported() -> None:
    final = {"model": "m", "created_at": "2024-05-01T10:00:00Z", "message": {"role": "assistant", "content": ""},
             "done": True, "done_reason": "stop", "total_duration": 10, "load_duration": 0, "prompt_eval_count": 9,
             "prompt_eval_duration": 2, "eval_count": 1, "eval_duration": 1}
    for cached in (0, 7):
        reported = {**final, "prompt_eval_cached_count": cached}
        assert convert.chat_chunk_from_pb(convert.chat_chunk_to_pb(reported)) == reported
    assert "prompt_eval_cached_count" not in convert.chat_chunk_from_pb(convert.chat_chunk_to_pb(final))


def test_embed_accepts_string_or_list() -> None:
    assert list(convert.embed_request_to_pb({"model": "e", "input": "one"}).input) == ["one"]
    assert list(convert.embed_request_to_pb({"model": "e", "input": ["a", "b"]}).input) == ["a", "b"]
    resp = {"model": "e", "embeddings": [[0.5, -0.25]], "total_duration": 1, "load_duration": 0, "prompt_eval_count": 2}
    assert convert.embed_response_from_pb(convert.embed_response_to_pb(resp)) == resp


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"prompt": "x"}, "model is required"),
        ({"model": "m", "options": {"num_ctx": "big"}}, 'option "num_ctx" must be of type integer'),
        ({"model": "m", "options": {"temperature": True}}, 'option "temperature" must be of type float32'),
        ({"model": "m", "options": {"stop": 3}}, 'option "stop" must be of type array'),
        ({"model": "m", "options": {"use_mmap": 1}}, 'option "use_mmap" must be of type boolean'),
        ({"model": "m", "keep_alive": "soon"}, "invalid duration"),
        ({"model": "m", "images": ["***"]}, "illegal base64"),
        ({"model": "m", "format": 7}, "invalid format"),
        ({"model": "m", "think": "very"}, "invalid think"),
    ],
)
def test_bad_generate_input_is_a_400(body: dict[str, object], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        convert.generate_request_to_pb(body)


def test_null_options_and_fields_are_skipped_as_ollama_does() -> None:
    # What llama-index's Ollama LLM and langchain's OllamaEmbeddings send: every option, unset ones null.
    options = {"temperature": None, "mirostat": None, "stop": None, "num_ctx": 2048, "tfs_z": None, "seed": None}
    body = {"model": "m", "prompt": "p", "options": options, "system": None, "format": None, "think": None,
            "keep_alive": None, "images": None, "context": None, "raw": None}
    msg = convert.generate_request_to_pb(body)
    assert convert.options_from_pb(msg.options) == {"num_ctx": 2048}
    assert not msg.HasField("format") and not msg.HasField("think") and not msg.HasField("keep_alive")
    chat = convert.chat_request_to_pb({"model": "m", "messages": [{"role": "user", "content": "x"}],
                                       "tools": None, "options": {"stop": ["a", None]}})
    assert list(chat.options.stop) == ["a"]
    embed = convert.embed_request_to_pb({"model": "e", "input": "x", "truncate": None, "dimensions": None,
                                         "options": {"mirostat": None}})
    assert not embed.HasField("truncate") and not embed.dimensions


@pytest.mark.parametrize("value", [float("inf"), 2**40, float("nan")])
def test_out_of_range_integer_options_are_ollamas_400_not_a_python_error(value: float) -> None:
    with pytest.raises(BadRequest, match=r'^option "num_ctx" must be of type integer$'):
        convert.options_to_pb({"num_ctx": value})


def test_embed_rejects_non_string_input() -> None:
    with pytest.raises(BadRequest, match="invalid input type"):
        convert.embed_request_to_pb({"model": "e", "input": [1, 2]})


@pytest.mark.parametrize(
    ("value", "ns"),
    [
        (0, 0),
        (10, 10 * 10**9),
        (1.5, 1_500_000_000),
        ("5m", 300 * 10**9),
        ("1h30m", 5400 * 10**9),
        ("250ms", 250 * 10**6),
        ("-1", -1),
        (-5, -1),
        ("30", 30 * 10**9),
    ],
)
def test_durations(value: object, ns: int) -> None:
    assert duration_from_json(value) == ns


def test_duration_back_to_json() -> None:
    assert duration_to_json(300 * 10**9) == 300
    assert duration_to_json(1_500_000_000) == 1.5
    assert duration_to_json(-1) == -1


def test_timestamps_keep_nanoseconds() -> None:
    ns = 1_714_557_600_123_456_789
    assert rfc3339_to_ns(rfc3339_from_ns(ns)) == ns
    assert rfc3339_to_ns("2024-05-01T12:00:00+02:00") == 1_714_557_600 * 10**9
    assert rfc3339_from_ns(0) == "0001-01-01T00:00:00Z"
    assert rfc3339_to_ns("2318-08-29T12:00:00Z") == 2**63 - 1  # Ollama's "forever" fits in int64


def test_models_round_trip() -> None:
    model = {
        "name": "llama3.2:latest",
        "model": "llama3.2:latest",
        "modified_at": "2024-05-01T10:00:00Z",
        "size": 123,
        "digest": "abc",
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": "llama",
            "families": ["llama"],
            "parameter_size": "3B",
            "quantization_level": "Q4_K_M",
        },
    }
    assert convert.model_info_from_pb(convert.model_info_to_pb(model)) == model
    progress = {"status": "pulling abc", "digest": "sha256:abc", "total": 10, "completed": 4}
    assert convert.progress_from_pb(convert.progress_to_pb(progress)) == progress
    create = {
        "model": "new",
        "from": "llama3.2",
        "files": {"a.gguf": "sha256:" + "0" * 64},
        "system": "s",
        "parameters": {"temperature": 0.1},
        "license": ["MIT"],
    }
    assert convert.create_request_from_pb(convert.create_request_to_pb(create)) == create



def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("convert_", "body"),
    [
        (convert.chat_request_to_pb, {"model": "m", "messages": [{"role": "user", "tool_calls": [None]}]}),
        (convert.chat_request_to_pb, {"model": "m", "messages": [], "tools": ["x"]}),
        (convert.chat_request_to_pb, {"model": "m", "messages": [], "format": _nested(60)}),
        (convert.generate_request_to_pb, {"model": "m", "context": [None]}),
        (convert.generate_request_to_pb, {"model": "m", "keep_alive": 1e300}),
    ],
)
def test_a_request_protobuf_cannot_carry_is_a_bad_request(convert_: Any, body: dict[str, Any]) -> None:
    # Issue 20: an untyped error here used to be taken for the host failing (502, host marked down).
    with pytest.raises(BadRequest):
        convert_(body)
