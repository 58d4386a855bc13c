"""Requests that once marked every agent they reached as down (issue 20): each must be the request's own 400.

Shared by the poison tests and bench/bench_reliability.py, so both send the same shapes.
"""

from __future__ import annotations

from typing import Any

MODEL = "llama3.2"
USER = {"role": "user", "content": "hi"}


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


POISON: list[tuple[str, dict[str, Any]]] = [
    ("/api/generate", {"model": MODEL, "prompt": "x", "context": [None]}),
    ("/api/generate", {"model": MODEL, "prompt": "x", "images": [None]}),
    ("/api/generate", {"model": MODEL, "prompt": "x", "keep_alive": 1e300}),
    ("/api/generate", {"model": MODEL, "prompt": "x", "keep_alive": "1e300s"}),
    ("/api/chat", {"model": MODEL, "messages": [{**USER, "images": [None]}]}),
    ("/api/chat", {"model": MODEL, "messages": [{**USER, "tool_calls": [None]}]}),
    ("/api/chat", {"model": MODEL, "messages": [{**USER, "tool_calls": [{"function": "f"}]}]}),
    ("/api/chat", {"model": MODEL, "messages": [None]}),
    ("/api/chat", {"model": MODEL, "messages": [USER], "tools": [None]}),
    ("/api/chat", {"model": MODEL, "messages": [USER], "tools": ["x"]}),
    ("/api/chat", {"model": MODEL, "messages": [USER], "tools": [{"function": "x"}]}),
    ("/api/chat", {"model": MODEL, "messages": [USER], "format": nested(50)}),
    ("/api/chat", {"model": MODEL, "messages": [USER], "format": nested(500)}),
    ("/api/embed", {"model": MODEL, "input": ["a", None]}),
]
