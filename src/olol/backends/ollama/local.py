"""`olol server --backend ollama`: the Ollama on this host, or one the agent starts and supervises."""

from __future__ import annotations

from olol.backends.local import LocalOptions
from olol.backends.ollama.backend import OllamaBackend
from olol.backends.ollama.serve import SupervisedOllamaBackend
from olol.cluster.backend import Backend

__all__ = ["build"]


def build(options: LocalOptions) -> Backend:
    if options.ollama_serve:
        return SupervisedOllamaBackend(
            options.ollama_host, options.settings, parallel=options.parallel or 1, binary=options.ollama_bin
        )
    return OllamaBackend(options.ollama_host, parallel=options.parallel or 1, settings=options.settings)
