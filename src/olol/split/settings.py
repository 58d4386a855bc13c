"""`DistributedSettings`: how `olol proxy --distributed` splits models over rpc-servers. Off by default.

Kept free of heavy imports (grpc, llama.cpp helpers): `ProxyConfig` holds one
of these whether or not the feature is used.
"""

from __future__ import annotations

from dataclasses import dataclass

from olol._fast._plan_types import check_objective  # stdlib only: not the compiled planner
from olol.config import setting

__all__ = ["DistributedSettings", "parse_model_specs"]


@dataclass
class DistributedSettings:
    """A `setting` field is also `olol proxy`'s flag of that name (its TOML key: `key`, else the field's name)."""

    #: Serve models split across `rpc_servers` as cluster hosts of their own; None: when rpc_servers are given.
    enabled: bool | None = setting(
        None, "--distributed/--no-distributed",
        help="Serve models split across --rpc-servers (llama.cpp RPC) as hosts of their own.",
        env="OLOL_DISTRIBUTED", key="distributed", type=bool, shown="on when rpc-servers are given",
    )
    #: `olol rpc-server` addresses (host:port, gRPC), in split order (by latency, the one holding the output
    #: layer may move last).
    rpc_servers: list[str] = setting(
        [], "--rpc-servers",
        help="`olol rpc-server` hosts a split model runs on, in split order (by latency, the one holding the output "
        "layer may move last): h1:50052,h2:50052.", env="OLOL_RPC_SERVERS", type=list[str],
    )
    #: Models to split, as NAME (an Ollama model) or NAME=PATH (a GGUF served as NAME); the first is split at
    #: start-up, the others when asked for (the workers hold one split at a time).
    models: list[str] = setting(
        [], "--dist-model", help="A model to split: an Ollama NAME, or NAME=PATH to a GGUF (repeatable); the first "
        "is split at start-up.", key="dist_models", type=list[str],
    )
    #: Split a model when no host that has it has the memory for it (GGUF size + KV cache vs free memory).
    auto: bool = setting(
        True, "--dist-auto/--no-dist-auto",
        help="Split a requested model when no host that has it has the memory for it (GGUF size + KV cache vs free "
        "memory); options.distributed=true always splits.", key="dist_auto",
    )
    #: "tunnel" (cluster token, optional TLS: the rpc-servers' data ports, else gRPC messages), "grpc" (the
    #: tunnel in gRPC messages only) or "direct" (llama-server dials ggml workers: trusted LANs).
    transport: str = setting(
        "tunnel", "--dist-transport",
        help="tunnel (cluster token, optional TLS; the rpc-servers' data ports, else gRPC messages), grpc (the "
        "tunnel in gRPC messages only) or direct (trusted networks).", key="dist_transport",
    )
    #: Ollama models directory the GGUFs of requested models are found in; None: $OLLAMA_MODELS, ~/.ollama/models.
    models_dir: str | None = setting(
        None, "--models-dir", help="Ollama models directory split models are read from.", env="OLLAMA_MODELS",
        shown="~/.ollama/models",
    )
    #: Context tokens of the split llama-server; None: the workers' advice, else 2048.
    ctx_size: int | None = setting(
        None, "--dist-ctx-size", help="Context tokens of a split model.", key="dist_ctx_size", type=int,
        shown="the workers' advice, else 2048",
    )
    #: Requests the split llama-server serves at once; None: llama-server's default.
    parallel: int | None = setting(
        None, "--dist-parallel", help="Requests a split model serves at once.", key="dist_parallel", type=int,
        shown="llama-server's",
    )
    #: CPU threads of the split llama-server (it computes the token embedding and sampling).
    threads: int | None = setting(
        None, "--dist-threads", help="CPU threads of a split model's llama-server.", key="dist_threads", type=int,
        shown="llama.cpp's",
    )
    #: Share of each worker's free memory kept spare by the planner.
    margin: float = setting(
        0.1, "--dist-margin", help="Share of each rpc-server's free memory kept spare.", key="dist_margin"
    )
    #: What the planner minimises: "latency" (time per token of one request; llama.cpp runs the stages of a
    #: split one after the other) or "balanced" (the slowest stage, for when stages overlap).
    objective: str = setting(
        "latency", "--dist-objective",
        help="What the layer plan minimises: latency (time per token of a request; llama.cpp runs the stages one "
        "after another) or balanced (the slowest stage).", key="dist_objective",
    )
    #: llama-server executable; None: $OLOL_LLAMA_SERVER, PATH, then the cached build.
    llama_server_bin: str | None = setting(
        None, "--llama-server-bin", help="llama-server for split models.", env="OLOL_LLAMA_SERVER",
        shown="found or built",
    )

    #: Also use the rpc-servers of this cluster that the proxy's discovery finds (mDNS adverts and registrations).
    discovered: bool = True

    def __post_init__(self) -> None:
        if self.enabled is None:
            self.enabled = bool(self.rpc_servers)
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
