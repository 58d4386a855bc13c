"""The one place a `Backend` is built: a remote target, or the engine an agent serves on its own host.

`make_backend`: a target of the proxy's `--servers`, a discovered host, or a client's. URLs with a
scheme are plain Ollama servers (or an OLOL proxy, which speaks Ollama's API); anything else is an
OLOL agent's gRPC address.

`make_local_backend`: `olol server --backend NAME`, one entry of `ENGINES` a name. A new engine is
a folder under `olol/backends/` (its adapter, and `local.build` making it from the agent's settings)
and one line there.

The llama.cpp adapter is imported only when an agent serves it (`llamacpp/local.py`): it brings
numpy, which no proxy or client needs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from ssl import SSLContext
from typing import TYPE_CHECKING

from olol.backends.agent import AgentBackend
from olol.backends.llamacpp import local as llamacpp_local
from olol.backends.local import LocalOptions
from olol.backends.ollama import local as ollama_local
from olol.backends.ollama.backend import OllamaBackend
from olol.cluster.backend import Backend

if TYPE_CHECKING:
    from olol.security.tls import TlsFiles

__all__ = ["ENGINES", "is_ollama_url", "make_backend", "make_local_backend"]


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
    return AgentBackend(target, token=token, tls=tls)


#: `olol server --backend` name -> how its engine is built from the agent's settings (each engine's
#: folder has its `local.build`).
ENGINES: dict[str, Callable[[LocalOptions], Backend]] = {
    "ollama": ollama_local.build,
    "llamacpp": llamacpp_local.build,
}


def make_local_backend(options: LocalOptions) -> Backend:
    """The engine `olol server` serves (`options.backend` names it); warns of host settings it ignores."""
    options.settings.warn_fallbacks()
    build = ENGINES.get(options.backend)
    if build is None:
        raise ValueError(f"unknown backend {options.backend!r} (choose {' or '.join(ENGINES)})")
    return build(options)
