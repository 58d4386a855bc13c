"""What a generation will say, decided before the first token is paced out.

Planning up front keeps the answer a pure function of the request (model, prompt,
options, format, tools), so streaming and non-streaming replies carry the same text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from tests.support.ollama_sim._catalogue import ModelSpec
from tests.support.ollama_sim._request import _num_predict, _stops
from tests.support.ollama_sim._text import _rng, _schema_instance, _words
from tests.support.ollama_sim._wire import JSON


@dataclass
class _Plan:
    """What a generation will emit: (kind, value) steps and how it ends."""

    steps: list[tuple[str, Any]]
    done_reason: str

    def text(self, kind: str) -> str:
        return "".join(v for k, v in self.steps if k == kind)

    def tool_calls(self) -> list[JSON]:
        return [call for k, v in self.steps if k == "tool_calls" for call in v]


def _make_plan(
    spec: ModelSpec,
    prompt_key: str,
    options: JSON,
    *,
    think: bool,
    fmt: Any,
    tool_calls: list[JSON] | None,
    thinking_tokens: int,
    response_tokens: int,
) -> _Plan:
    rng = _rng(spec.name, prompt_key, options.get("seed", 0))
    limit = _num_predict(options)
    steps: list[tuple[str, Any]] = []
    if think:
        for word in _words(_rng("think", spec.name, prompt_key), thinking_tokens):
            if limit is not None and len(steps) >= limit:
                return _Plan(steps, "length")
            steps.append(("thinking", word))
    if tool_calls:
        return _Plan([*steps, ("tool_calls", tool_calls)], "stop")
    if fmt:
        obj = {"response": "".join(_words(rng, 3))} if fmt == "json" else _schema_instance(fmt, rng)
        text = json.dumps(obj)
        natural = re.findall(r"\s*\S+", text)
    elif limit is None:
        natural = _words(rng, response_tokens)
    else:
        natural = _words(rng, max(0, limit - len(steps)))
    stops, text, truncated = _stops(options), "", False
    for word in natural:
        if limit is not None and len(steps) >= limit:
            truncated = True
            break
        candidate = text + word
        hits = [i for i in (candidate.find(s) for s in stops) if i >= 0]
        if hits:
            piece = candidate[len(text) : min(hits)]
            if piece:
                steps.append(("content", piece))
            return _Plan(steps, "stop")
        steps.append(("content", word))
        text = candidate
    # Free text only ends by itself when num_predict is unset; with it, the budget ends it.
    truncated = truncated or (limit is not None and not fmt and len(steps) >= limit)
    return _Plan(steps, "length" if truncated else "stop")
