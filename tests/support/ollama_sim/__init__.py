"""A faithful simulator of Ollama's REST API, for tests.

Why a simulator rather than mocks: every OLOL mode speaks Ollama's HTTP API and
the official clients are the judges of compatibility. A real HTTP server with
Ollama's status codes, NDJSON framing, error texts, model loading and request
queueing lets each layer be tested end to end without GPUs, deterministically,
and lets tests inject what real hosts do (slow tokens, busy, an error line
mid-stream, a crash, a client hanging up).

Output is deterministic: text is words drawn from a fixed vocabulary with a
generator seeded by model, prompt and `options.seed`; embeddings likewise.
"Tokens" are whitespace-separated words.

The endpoints share one host's state (models, blobs, loaded runners, admission
queue), so that state lives in one base class (`_core`, with the scheduler in
`_scheduler`) and each area of the API is a mixin over it (`_generation`,
`_embeddings`, `_status`, `_models`) that `_server` assembles into `OllamaSim`.
The error texts are Ollama's own literals, deliberately not imported from
`olol.errors`, so the simulator stays an independent oracle the project's errors
are checked against.

Run standalone (a host that tests can kill):
    python -m tests.support.ollama_sim --models llama3.2,nomic-embed-text --token-rate 50
prints `READY http://127.0.0.1:PORT` once listening and exits 0 on SIGTERM.
"""

from __future__ import annotations

from tests.support.ollama_sim._catalogue import ModelSpec, default_models, default_registry
from tests.support.ollama_sim._cli import main
from tests.support.ollama_sim._digests import _blob_key as _blob_key
from tests.support.ollama_sim._errors import BUSY_MESSAGE, SimError
from tests.support.ollama_sim._errors import DEFAULT_FAIL_MESSAGE as DEFAULT_FAIL_MESSAGE
from tests.support.ollama_sim._gotime import parse_keep_alive as parse_keep_alive
from tests.support.ollama_sim._names import normalize_name
from tests.support.ollama_sim._request import RecordedRequest
from tests.support.ollama_sim._server import OllamaSim

__all__ = [
    "BUSY_MESSAGE",
    "ModelSpec",
    "OllamaSim",
    "RecordedRequest",
    "SimError",
    "default_models",
    "default_registry",
    "main",
    "normalize_name",
]
