"""`DistributedSettings`: how `olol proxy --distributed` splits models over rpc-servers. Off by default.

Kept free of heavy imports (grpc, llama.cpp helpers): `ProxyConfig` holds one
of these whether or not the feature is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from olol._fast._plan_types import check_objective  # stdlib only: not the compiled planner

__all__ = ["DistributedSettings", "parse_model_specs"]


@dataclass
class DistributedSettings:
    #: Serve models split across `rpc_servers` as cluster hosts of their own.
    enabled: bool = False
    #: `olol rpc-server` addresses (host:port, gRPC), in split order (by latency, the one holding the output
    #: layer may move last).
    rpc_servers: list[str] = field(default_factory=list)
    #: Models to split, as NAME (an Ollama model) or NAME=PATH (a GGUF served as NAME); the first is split at
    #: start-up, the others when asked for (the workers hold one split at a time).
    models: list[str] = field(default_factory=list)
    #: Split a model when no host that has it has the memory for it (GGUF size + KV cache vs free memory).
    auto: bool = True
    #: "tunnel" (cluster token, optional TLS: the rpc-servers' data ports, else gRPC messages), "grpc" (the
    #: tunnel in gRPC messages only) or "direct" (llama-server dials ggml workers: trusted LANs).
    transport: str = "tunnel"
    #: Ollama models directory the GGUFs of requested models are found in; None: $OLLAMA_MODELS, ~/.ollama/models.
    models_dir: str | None = None
    #: Context tokens of the split llama-server; None: the workers' advice, else 2048.
    ctx_size: int | None = None
    #: Requests the split llama-server serves at once; None: llama-server's default.
    parallel: int | None = None
    #: CPU threads of the split llama-server (it computes the token embedding and sampling).
    threads: int | None = None
    #: Share of each worker's free memory kept spare by the planner.
    margin: float = 0.1
    #: What the planner minimises: "latency" (time per token of one request; llama.cpp runs the stages of a
    #: split one after the other) or "balanced" (the slowest stage, for when stages overlap).
    objective: str = "latency"
    #: llama-server executable; None: $OLOL_LLAMA_SERVER, PATH, then the cached build.
    llama_server_bin: str | None = None

    #: Also use the rpc-servers of this cluster that the proxy's discovery finds (mDNS adverts and registrations).
    discovered: bool = True

    def __post_init__(self) -> None:
        parse_model_specs(self.models)  # fail at start-up, not at the first request
        check_objective(self.objective)


def parse_model_specs(specs: list[str]) -> dict[str, str | None]:
    """["big=/m/big.gguf", "llama3:70b"] -> {"big": "/m/big.gguf", "llama3:70b": None} (order kept)."""
    out: dict[str, str | None] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        name, path = name.strip(), path.strip()
        if not name or (sep and not path):
            raise ValueError(f"a distributed model is NAME or NAME=PATH, not {spec!r}")
        out[name] = path or None
    return out
