"""The request that asks another host to continue a partial answer.

* chat: the original messages plus the text relayed so far as a final assistant message;
  Ollama and llama-server both continue such a message instead of starting a new one.
* generate with `raw`: the prompt plus the text so far is itself the continuation prompt.
* generate through the model's template (also `/v1/completions`): the same answer as a chat
  turn, `[system], user(prompt), assistant(text so far)`, which is what the template renders
  for a generate call; the chat chunks are mapped back to generate chunks.

The token budget (`num_predict`) shrinks by the tokens already sent. Requests whose relayed
output cannot be re-sent faithfully are not continued (the reason is returned): thinking text
or a tool call already relayed, a `format` grammar (it would start the JSON again), a Go
`template` override, `suffix`, or `context` tokens on a templated generate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from olol.cluster.backend import JSON
from olol.proxy.resume.transcript import Kind, Transcript
from olol.wire.tokens import RESUME_TOKENS

__all__ = ["Continuation", "plan_continuation"]


@dataclass(frozen=True)
class Continuation:
    kind: Kind  # which endpoint the host is asked: a templated generate continues as a chat
    body: JSON
    #: Turns the host's chunks into the client's kind (chat chunks of a templated generate).
    translate: Callable[[JSON], JSON] | None = None
    #: Tokens left in the request's budget; 0 means the answer is already complete.
    remaining: int | None = None
    #: The body for hosts that continue from token ids (llama.cpp), when every relayed id is known.
    exact_body: JSON | None = None


def _budget(body: JSON, transcript: Transcript) -> tuple[JSON, int | None]:
    options = body.get("options")
    options = dict(options) if isinstance(options, dict) else {}
    limit = options.get("num_predict")
    remaining: int | None = None
    if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:  # -1 / -2: no fixed budget
        remaining = max(0, limit - transcript.generated)
        options["num_predict"] = remaining
    options.pop("resume", None)
    return options, remaining


def _chat_as_generate(chunk: JSON) -> JSON:
    message = chunk.get("message") or {}
    out = {k: v for k, v in chunk.items() if k != "message"}
    out["response"] = message.get("content") or ""
    return out


def plan_continuation(kind: Kind, body: JSON, transcript: Transcript) -> Continuation | str:
    """The continuation request, or why this answer cannot be continued faithfully."""
    if transcript.thinking:
        return "thinking"
    if transcript.tool_calls:
        return "tool_calls"
    if body.get("format"):
        return "format"
    options, remaining = _budget(body, transcript)
    base = {k: v for k, v in body.items() if k not in ("options", "stream")}
    base["stream"] = True
    if options:
        base["options"] = options
    text = transcript.text
    ids = transcript.exact_ids
    if kind == "chat":
        messages = list(body.get("messages") or [])
        base["messages"] = [*messages, {"role": "assistant", "content": text}]
        return Continuation("chat", base, None, remaining, _exact(base, ids))
    if body.get("suffix"):
        return "suffix"
    if body.get("raw"):
        exact = _exact(base, ids)  # the prompt as it was, then the ids
        base["prompt"] = str(body.get("prompt") or "") + text
        return Continuation("generate", base, None, remaining, exact)
    if body.get("template"):
        return "template"
    if body.get("context"):
        return "context"
    user: JSON = {"role": "user", "content": str(body.get("prompt") or "")}
    if body.get("images"):
        user["images"] = body["images"]
    messages = [{"role": "system", "content": body["system"]}] if body.get("system") else []
    chat = {k: v for k, v in base.items() if k not in ("prompt", "system", "images", "raw", "suffix")}
    chat["messages"] = [*messages, user, {"role": "assistant", "content": text}]
    return Continuation("chat", chat, _chat_as_generate, remaining, _exact(chat, ids))


def _exact(body: JSON, ids: list[int] | None) -> JSON | None:
    # A chat keeps its final assistant message: the host drops it when it continues from the ids.
    return None if ids is None else {**body, RESUME_TOKENS: list(ids)}
