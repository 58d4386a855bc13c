"""One place that turns a `--servers` entry into a `Backend`.

URLs with a scheme are plain Ollama servers; anything else is an OLOL agent's
gRPC address. The agent client is imported only when an agent is configured,
so a proxy over plain Ollama hosts never loads grpc.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from olol.backends.ollama.backend import OllamaBackend
from olol.cluster.backend import Backend

if TYPE_CHECKING:
    from olol.security.settings import SecuritySettings

__all__ = ["is_ollama_url", "make_backend"]


def is_ollama_url(spec: str) -> bool:
    return spec.strip().lower().startswith(("http://", "https://"))


def make_backend(spec: str, *, parallel: int | None = None, security: SecuritySettings | None = None) -> Backend:
    """A backend for one server spec; `parallel` is the slot count assumed for a plain Ollama host.

    `security` gives agents the cluster token and TLS files (plain Ollama hosts have neither).
    """
    target = spec.strip()
    if is_ollama_url(target):
        return OllamaBackend(target, parallel=parallel or 1)
    # Imported by name, lazily: grpc is loaded only when agents are configured.
    agent_backend = importlib.import_module("olol.backends.agent")
    if security is not None:
        backend: Backend = agent_backend.AgentBackend(target, token=security.token, tls=security.tls)
    else:
        backend = agent_backend.AgentBackend(target)
    return backend
