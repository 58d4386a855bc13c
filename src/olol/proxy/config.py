"""`ProxyConfig`: every setting of `olol proxy`, built once (from CLI flags or the environment)."""

from __future__ import annotations

from dataclasses import dataclass, field

from olol.discovery.settings import DiscoverySettings
from olol.proxy.policies import DEFAULT_POLICY
from olol.security.settings import SecuritySettings
from olol.split.settings import DistributedSettings

__all__ = ["DEFAULT_PORT", "ProxyConfig"]

DEFAULT_PORT = 8000


@dataclass
class ProxyConfig:
    """Settings of one proxy. Durations are in seconds."""

    #: Interface to listen on. "0.0.0.0" serves the LAN; "127.0.0.1" this machine only.
    host: str = "0.0.0.0"
    #: TCP port; 11434 makes the proxy a true drop-in for Ollama clients; 0 picks a free port.
    port: int = DEFAULT_PORT
    #: Hosts of the cluster: agents as "host:50051", plain Ollama servers as "http://host:11434".
    servers: list[str] = field(default_factory=list)
    #: Routing policy: "adaptive" (default), "least_connections" or "round_robin".
    balancer: str = DEFAULT_POLICY
    #: Hosts a `/api/pull` (and blob upload) goes to; None = every healthy host, most free memory first.
    replicas: int | None = None
    #: Serve a request for a quant (e.g. `-q4_0`) with a compatible higher-quality one when needed.
    quant_fallback: bool = True
    #: Keep conversations on the host holding their KV cache (`X-OLOL-Session` or prompt prefix).
    affinity: bool = True
    #: Bounded-load factor for affinity: a pinned host may hold at most this x the mean load.
    affinity_load_factor: float = 1.25
    #: How long a request may wait for a free host before 503 + Retry-After.
    max_queue_wait: float = 30.0
    #: Requests that may wait per model before new ones get 503 at once (Ollama's OLLAMA_MAX_QUEUE).
    max_queue: int = 512
    #: Time for a host to send the first chunk (model load included) before the next host is tried.
    first_byte_timeout: float | None = 300.0
    #: Limit on a whole request, first byte to last; None = unlimited (long generations are legitimate).
    request_timeout: float | None = None
    #: Hosts tried per request before its error is returned.
    max_attempts: int = 3
    #: Seconds between health/model probes of hosts without a state feed; a dead host is out within 3x this.
    probe_interval: float = 1.0
    #: Parallel slots assumed for a plain Ollama host (its OLLAMA_NUM_PARALLEL, which its API does not tell).
    default_parallel: int = 4
    #: Per-host overrides of `default_parallel`, keyed by server spec.
    host_parallel: dict[str, int] = field(default_factory=dict)
    #: Per-host weights (default 1.0): a host with weight 2 is treated as twice as fast by "adaptive".
    host_weights: dict[str, float] = field(default_factory=dict)
    #: Per-host priority tiers (default 0): tier 1 only takes work when every tier-0 host is full.
    host_tiers: dict[str, int] = field(default_factory=dict)
    #: Seconds in-flight requests get to finish on SIGTERM/SIGINT before they are cut.
    shutdown_timeout: float = 10.0
    #: Cluster token for agents, HTTPS/TLS, API keys and input limits (docs/security.md); default: open, as before.
    security: SecuritySettings = field(default_factory=SecuritySettings)
    #: Hosts that find the proxy on their own: mDNS, agent registrations, subnet scan; default: off.
    discovery: DiscoverySettings = field(default_factory=DiscoverySettings)
    #: Directory of durable state (chat sessions in `sessions.db`); None keeps sessions in memory.
    #: `olol proxy` defaults it to the XDG state dir (`$XDG_STATE_HOME/olol`, else ~/.local/state/olol).
    state_dir: str | None = None
    #: Seconds a chat session may stay idle before it expires; 0 = never.
    session_ttl: float = 7 * 24 * 3600.0
    #: Port of the chat sessions gRPC service (olol.sessions.v1.Sessions); None = off, 0 = a free port.
    grpc_port: int | None = None
    #: Copy models between hosts over the LAN instead of downloading them again (olol.placement).
    lan_copy: bool = True
    #: Keep every model on at least this many healthy hosts, re-placing it when hosts die; None = off.
    min_replicas: int | None = None
    #: Seconds a model may be short of replicas (a host restarting) before it is re-placed.
    replica_grace: float = 30.0
    #: Place a model no host has when a request asks for it (the request waits); off by default.
    pull_on_demand: bool = False
    #: Where the proxy stages copies it relays into plain Ollama hosts; None = ~/.cache/olol/transfer.
    transfer_dir: str | None = None
    #: Models split across `olol rpc-server` hosts, served as hosts of their own (olol.proxy.distributed).
    distributed: DistributedSettings = field(default_factory=DistributedSettings)
