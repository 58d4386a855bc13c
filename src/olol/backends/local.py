"""What building the engine an agent serves reads (`olol server --backend`; `olol.backends.factory`).

`olol.agent.config.AgentConfig` is one; an engine's `local.build` takes it as this protocol, so the
adapters never import the agent.
"""

from __future__ import annotations

from typing import Protocol

from olol.backends.host_settings import HostSettings

__all__ = ["LocalOptions"]


class LocalOptions(Protocol):
    backend: str
    settings: HostSettings
    parallel: int | None
    ollama_host: str
    ollama_serve: bool
    ollama_bin: str | None
    llama_url: str | None
    model: str | None
    model_name: str | None
    models_dir: str | None
    llama_server_bin: str | None
    ctx_size: int
    threads: int | None
    llama_args: list[str]
