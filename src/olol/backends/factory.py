"""The one place a `Backend` is built: a remote target, or the engine an agent serves on its own host.

`make_backend`: a target of the proxy's `--servers`, a discovered host, or a client's. URLs with a
scheme are plain Ollama servers (or an OLOL proxy, which speaks Ollama's API); anything else is an
OLOL agent's gRPC address.

`make_local_backend`: `olol server --backend NAME`, one entry of `ENGINES` a name. A new engine is
a folder under `olol/backends/` and one line there.

Adapters other than Ollama's are imported only when one is asked for: a proxy or client over plain
Ollama hosts never loads grpc (the agent adapter) nor numpy (llama.cpp's).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from ssl import SSLContext
from typing import TYPE_CHECKING, Protocol

from olol.backends.host_settings import HostSettings
from olol.backends.ollama.backend import OllamaBackend
from olol.backends.ollama.serve import SupervisedOllamaBackend
from olol.cluster.backend import Backend

if TYPE_CHECKING:
    from olol.security.tls import TlsFiles

__all__ = ["ENGINES", "LocalOptions", "is_ollama_url", "make_backend", "make_local_backend"]


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


class LocalOptions(Protocol):
    """What building an agent's own engine reads (`olol.agent.config.AgentConfig` is one)."""

    @property
    def backend(self) -> str: ...
    @property
    def settings(self) -> HostSettings: ...
    @property
    def parallel(self) -> int | None: ...
    @property
    def ollama_host(self) -> str: ...
    @property
    def ollama_serve(self) -> bool: ...
    @property
    def ollama_bin(self) -> str | None: ...
    @property
    def llama_url(self) -> str | None: ...
    @property
    def model(self) -> str | None: ...
    @property
    def model_name(self) -> str | None: ...
    @property
    def models_dir(self) -> str | None: ...
    @property
    def llama_server_bin(self) -> str | None: ...
    @property
    def ctx_size(self) -> int: ...
    @property
    def threads(self) -> int | None: ...
    @property
    def llama_args(self) -> Sequence[str]: ...


def _ollama(options: LocalOptions) -> Backend:
    if options.ollama_serve:
        return SupervisedOllamaBackend(
            options.ollama_host, options.settings, parallel=options.parallel or 1, binary=options.ollama_bin
        )
    return OllamaBackend(options.ollama_host, parallel=options.parallel or 1, settings=options.settings)


def _llamacpp(options: LocalOptions) -> Backend:
    # Here, not at the top: the llama.cpp adapter brings numpy (import cost for every other process).
    from olol.backends.llamacpp.backend import LlamaCppBackend
    from olol.backends.llamacpp.host import LlamaHostBackend
    from olol.backends.llamacpp.process import LlamaServerConfig

    if options.llama_url:  # a llama-server someone else runs: attach, tune nothing
        return LlamaCppBackend(url=options.llama_url, model_path=options.model, model_name=options.model_name)
    if not options.model and not options.models_dir:
        raise ValueError("--backend llamacpp needs --llama-url URL, --model PATH or --models-dir DIR")
    tuning = {"ctx_size": options.ctx_size, **options.settings.llama_server_options()}  # the settings win
    template = LlamaServerConfig(
        model_path=Path(options.model or options.models_dir or "."),
        threads=options.threads,
        parallel=options.parallel or 4,
        binary=Path(options.llama_server_bin) if options.llama_server_bin else None,
        extra_args=tuple(options.llama_args),
        **tuning,
    )
    return LlamaHostBackend(
        template, models_dir=options.models_dir, model_name=options.model_name, settings=options.settings
    )


#: `olol server --backend` name -> how its engine is built from the agent's settings.
ENGINES: dict[str, Callable[[LocalOptions], Backend]] = {
    "ollama": _ollama,
    "llamacpp": _llamacpp,
}


def make_local_backend(options: LocalOptions) -> Backend:
    """The engine `olol server` serves (`options.backend` names it); warns of host settings it ignores."""
    options.settings.warn_fallbacks()
    build = ENGINES.get(options.backend)
    if build is None:
        raise ValueError(f"unknown backend {options.backend!r} (choose {' or '.join(ENGINES)})")
    return build(options)
