"""Deterministic model output: words, token ids, vectors, schema instances and tool calls.

Text is words drawn from a fixed vocabulary with a generator seeded by what the
request says, so the same request always gets the same answer; "tokens" are
whitespace-separated words.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
import re
import zlib
from typing import Any

from tests.support.ollama_sim._wire import JSON

_VOCAB = (
    "the", "a", "model", "cluster", "token", "stream", "node", "quick", "brown", "fox",
    "jumps", "over", "lazy", "dog", "river", "mountain", "light", "signal", "answer", "question",
    "simple", "bright", "green", "silent", "engine", "garden", "window", "paper", "stone", "cloud",
    "music", "ocean", "forest", "memory", "number", "letter", "castle", "rocket", "planet", "candle",
    "bridge", "mirror", "thunder", "velvet", "harbor", "lantern", "meadow", "orbit",
)  # fmt: skip


def _rng(*parts: Any) -> random.Random:
    seed = hashlib.sha256("\x00".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(seed[:8], "big"))


def _words(rng: random.Random, n: int) -> list[str]:
    return [(" " if i else "") + rng.choice(_VOCAB) for i in range(n)]


def _token_id(word: str) -> int:
    return zlib.crc32(word.strip().encode()) % 128256


def _count_tokens(text: str) -> int:
    return len(text.split())


def _unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def _schema_instance(schema: Any, rng: random.Random, depth: int = 0) -> Any:
    """A deterministic value satisfying the common parts of a JSON schema (for `format`
    and tool arguments), enough for clients that parse the output."""
    if not isinstance(schema, dict) or depth > 8:
        return rng.choice(_VOCAB)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return _schema_instance(schema[key][0], rng, depth + 1)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties") or {}
        return {k: _schema_instance(v, rng, depth + 1) for k, v in props.items()}
    if kind == "array":
        count = max(1, int(schema.get("minItems", 1)))
        return [_schema_instance(schema.get("items"), rng, depth + 1) for _ in range(count)]
    if kind == "integer":
        return rng.randint(0, 100)
    if kind == "number":
        return round(rng.uniform(0, 100), 2)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return rng.choice(_VOCAB)


def _tool_calls(messages: list[JSON], tools: list[Any], rng: random.Random) -> list[JSON] | None:
    """Echo tool use: "call <tool>" in the last (user) message calls that tool, with the JSON
    object that follows as arguments if there is one, else arguments made from its schema.
    After a tool result the model answers in text, so agent loops terminate."""
    if not tools or not messages or messages[-1].get("role") != "user":
        return None
    functions = {
        t["function"]["name"]: t["function"]
        for t in tools
        if isinstance(t, dict) and isinstance(t.get("function"), dict) and "name" in t["function"]
    }
    text = str(messages[-1].get("content") or "")
    calls: list[JSON] = []
    for m in re.finditer(r"\bcall\s+([A-Za-z_][\w.-]*)", text):
        function = functions.get(m.group(1))
        if function is None:
            continue
        rest = text[m.end() :].lstrip()
        arguments: Any = None
        if rest.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                arguments = json.JSONDecoder().raw_decode(rest)[0]
        if not isinstance(arguments, dict):
            arguments = _schema_instance(function.get("parameters") or {"type": "object"}, rng)
        calls.append({"function": {"name": m.group(1), "arguments": arguments}})
    return calls or None
