"""Settings of one agent, built once from flags/env/file by the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field

from olol.discovery.settings import DiscoverySettings
from olol.security.settings import SecuritySettings


@dataclass
class AgentConfig:
    host: str = "0.0.0.0"
    port: int = 50051
    backend: str = "ollama"  # "ollama" | "llamacpp"
    ollama_host: str = "http://localhost:11434"
    llama_url: str | None = None  # an existing llama-server
    model: str | None = None  # a GGUF to launch llama-server on
    model_name: str | None = None  # the Ollama name that model is served as
    llama_server_bin: str | None = None
    ctx_size: int = 2048
    threads: int | None = None
    parallel: int | None = None  # requests served at once; None: ask the backend
    llama_args: list[str] = field(default_factory=list)
    use_async: bool = False  # grpc.aio server instead of the threaded one
    workers: int = 32  # threads of the threaded server (each holds one call)
    grace: float = 10.0  # seconds SIGTERM waits for in-flight streams
    state_interval: float = 1.0  # seconds between host-state snapshots at most
    security: SecuritySettings = field(default_factory=SecuritySettings)  # token and TLS (docs/security.md)
    discovery: DiscoverySettings = field(default_factory=DiscoverySettings)  # mDNS advert, --proxy registration
    # Model transfer (olol.agent.transfer): where models are read from and received into.
    ollama_models: str | None = None  # Ollama's models dir; None: $OLLAMA_MODELS or ~/.ollama/models
    models_dir: str | None = None  # a llama.cpp host's GGUF dir; None: the directory of `model`
    transfer_dir: str | None = None  # partial copies, kept for resuming; None: ~/.cache/olol/transfer
    transfer_rate: float | None = None  # bytes/s this agent sends at most (all copies together); None: no limit
    registry: str | None = None  # base URL for models this agent downloads itself; None: https://registry.ollama.ai
