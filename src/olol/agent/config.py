"""Settings of one agent, built once from flags/env/file by the CLI.

A field declared with `setting` is also `olol server`'s flag of that name: its default, environment
variable and help are stated here only (`olol.cli.options` makes the option and resolves it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from olol.backends.host_settings import HostSettings
from olol.config import setting
from olol.discovery.settings import DiscoverySettings
from olol.security.settings import SecuritySettings


@dataclass
class AgentConfig:
    host: str = setting("0.0.0.0", "--host", help="Address to serve gRPC on.")
    port: int = setting(50051, "--port", "-p", help="gRPC port.", env="OLOL_PORT")
    backend: str = setting("ollama", "--backend", help="ollama or llamacpp.")
    ollama_host: str = setting("http://localhost:11434", "--ollama-host", help="Ollama's URL.", env="OLLAMA_HOST")
    llama_url: str | None = setting(None, "--llama-url", help="URL of a running llama-server (llamacpp backend).")
    model: str | None = setting(
        None, "--model", "-m", help="GGUF file: launch and supervise llama-server on it (llamacpp backend)."
    )
    model_name: str | None = setting(
        None, "--model-name", help="Name the llama.cpp model is served as.", shown="the file's stem"
    )
    llama_server_bin: str | None = setting(
        None, "--llama-server-bin", help="llama-server executable.", env="OLOL_LLAMA_SERVER", shown="found or built"
    )
    ctx_size: int = setting(
        2048, "--ctx-size", help="Context tokens per slot of a launched llama-server (--context-window wins)."
    )
    threads: int | None = setting(
        None, "--threads", "-t", help="Threads for a launched llama-server.", type=int, shown="llama.cpp's"
    )
    parallel: int | None = setting(
        None, "--parallel", help="Requests served at once; on llama.cpp, each loaded model's slots, each with "
        "the full context.", type=int, shown="4 on llama.cpp, else asked from the backend",
    )
    llama_args: list[str] = field(default_factory=list)
    settings: HostSettings = field(default_factory=HostSettings)  # the host's tuning (olol.cli.host_options)
    ollama_serve: bool = setting(
        False, "--ollama-serve/--no-ollama-serve", env="OLOL_OLLAMA_SERVE",
        help="Start and supervise `ollama serve` on --ollama-host with the host settings as Ollama's variables.",
    )
    ollama_bin: str | None = setting(
        None, "--ollama-bin", help="The ollama executable for --ollama-serve.", env="OLOL_OLLAMA_BIN",
        shown="ollama on PATH",
    )
    use_async: bool = setting(
        False, "--async/--threaded", help="Serve with grpc.aio instead of a thread pool.", key="async",
        shown="threaded",
    )
    workers: int = 32  # threads of the threaded server (each holds one call)
    grace: float = setting(10.0, "--grace", help="Seconds SIGTERM waits for in-flight streams.")
    state_interval: float = 1.0  # seconds between host-state snapshots at most
    security: SecuritySettings = field(default_factory=SecuritySettings)  # token and TLS (docs/security.md)
    discovery: DiscoverySettings = field(default_factory=DiscoverySettings)  # mDNS advert, --proxy registration
    # Model transfer (olol.agent.transfer): where models are read from and received into.
    ollama_models: str | None = setting(
        None, "--ollama-models", help="Ollama's models dir, read to copy models to peers.", env="OLLAMA_MODELS",
        shown="~/.ollama/models",
    )
    models_dir: str | None = setting(
        None, "--models-dir", help="GGUF dir of a llama.cpp host: every model in it is served, loaded on first use; "
        "model copies land there.", shown="--model's dir",
    )
    transfer_dir: str | None = setting(
        None, "--transfer-dir", help="Where partial model copies wait to be resumed.", shown="~/.cache/olol/transfer"
    )
    transfer_rate: float | None = setting(
        None, "--transfer-rate", help="Bytes/s this host sends model copies at, at most.", type=float,
        shown="no limit",
    )
    registry: str | None = setting(
        None, "--registry", help="Registry base URL for models this agent downloads itself, to seed LAN copies.",
        shown="https://registry.ollama.ai",
    )
