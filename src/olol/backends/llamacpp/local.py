"""`olol server --backend llamacpp`: a llama-server someone else runs, or the agent's own, supervised."""

from __future__ import annotations

from pathlib import Path

from olol.backends.local import LocalOptions
from olol.cluster.backend import Backend

__all__ = ["build"]


def build(options: LocalOptions) -> Backend:
    # Here, not at the top: the llama.cpp adapter brings numpy, and `olol.backends.factory` (which
    # every proxy and client loads) imports this module (import cost, not a cycle).
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
