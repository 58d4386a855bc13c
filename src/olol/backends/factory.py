"""The one place a target becomes a `Backend`: for the proxy's `--servers`, discovered hosts, and clients.

URLs with a scheme are plain Ollama servers (or an OLOL proxy, which speaks Ollama's API); anything
else is an OLOL agent's gRPC address. The agent adapter is imported only when an agent is asked for,
so a proxy or client over plain Ollama hosts never loads grpc.
"""

from __future__ import annotations

from collections.abc import Mapping
from ssl import SSLContext
from typing import TYPE_CHECKING

from olol.backends.ollama.backend import OllamaBackend
from olol.cluster.backend import Backend

if TYPE_CHECKING:
    from olol.security.tls import TlsFiles

__all__ = ["is_ollama_url", "make_backend"]


def is_ollama_url(spec: str) -> bool:
    return spec.strip().lower().startswith(("http://", "https://"))


def make_backend(
    spec: str,
    *,
    parallel: int | None = None,
    token: str | None = None,
    tls: TlsFiles | None = None,
    headers: Mapping[str, str] | None = None,
    ssl: SSLContext | bool = True,
) -> Backend:
    """A backend for one target; `parallel` is the slot count assumed for a plain Ollama host.

    An agent is dialled with the cluster `token` and `tls` files; an Ollama URL gets `headers` on every
    request (a client's API key for a secured proxy) and aiohttp's `ssl` (a CA context, or False).
    """
    target = spec.strip()
    if is_ollama_url(target):
        return OllamaBackend(target, parallel=parallel or 1, headers=headers, ssl=ssl)
    # Here, not at the top: grpc is loaded only when agents are configured (import cost, not a cycle).
    from olol.backends.agent import AgentBackend

    return AgentBackend(target, token=token, tls=tls)
