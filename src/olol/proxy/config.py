"""`ProxyConfig`: every setting of `olol proxy`, built once by the CLI (a `setting` field is also its flag)."""

from __future__ import annotations

from dataclasses import dataclass, field

from olol.config import setting
from olol.discovery.settings import DiscoverySettings
from olol.proxy.policies import DEFAULT_POLICY, POLICIES
from olol.security.settings import SecuritySettings
from olol.split.settings import DistributedSettings

__all__ = ["DEFAULT_PORT", "ProxyConfig"]

DEFAULT_PORT = 8000


@dataclass
class ProxyConfig:
    """Settings of one proxy. Durations are in seconds."""

    #: Interface to listen on. "0.0.0.0" serves the LAN; "127.0.0.1" this machine only.
    host: str = setting("0.0.0.0", "--host", help="Address to listen on.")
    #: TCP port; 11434 makes the proxy a true drop-in for Ollama clients; 0 picks a free port.
    port: int = setting(DEFAULT_PORT, "--port", "-p", help="HTTP port; 11434 makes it a true drop-in for Ollama.",
                        env="OLOL_PORT")
    #: Hosts of the cluster: agents as "host:50051", plain Ollama servers as "http://host:11434".
    servers: list[str] = setting(
        [], "--servers", "-s",
        help="Hosts, comma-separated or repeated: agents as host:50051, plain Ollama as http://host:11434.",
        env="OLLAMA_SERVERS", type=list[str], shown="none (--discovery)",
    )
    #: Routing policy: a name of `olol.proxy.policies` (the list is made there, so a new one shows here).
    balancer: str = setting(DEFAULT_POLICY, "--balancer", help=f"Routing policy: {', '.join(POLICIES)}.")
    #: Hosts a `/api/pull` (and blob upload) goes to; None = every healthy host, most free memory first.
    replicas: int | None = setting(None, "--replicas", help="Hosts an /api/pull goes to.", type=int,
                                   shown="every healthy host")
    #: Serve a request for a quant (e.g. `-q4_0`) with a compatible higher-quality one when needed.
    quant_fallback: bool = setting(
        True, "--quant-fallback/--no-quant-fallback",
        help="Serve a quantized model with a compatible higher-quality one already on a host.",
    )
    #: Keep conversations on the host holding their KV cache (`X-OLOL-Session` or prompt prefix).
    affinity: bool = setting(
        True, "--affinity/--no-affinity", help="Keep a conversation on one host (X-OLOL-Session or prompt prefix)."
    )
    #: Bounded-load factor for affinity: a pinned host may hold at most this x the mean load.
    affinity_load_factor: float = setting(
        1.25, "--affinity-load-factor", help="A pinned host may hold at most this x the mean load."
    )
    #: How long a request may wait for a free host before 503 + Retry-After.
    max_queue_wait: float = setting(
        30.0, "--max-queue-wait", help="Seconds a request may wait for a free host before 503."
    )
    #: Requests that may wait per model before new ones get 503 at once (Ollama's OLLAMA_MAX_QUEUE).
    max_queue: int = setting(512, "--max-queue", help="Requests that may wait per model.")
    #: Time for a host to send the first chunk (model load included) before the next host is tried.
    first_byte_timeout: float | None = setting(
        300.0, "--first-byte-timeout",
        help="Seconds a host may take to send its first chunk (model load included) before the next host is tried.",
    )
    #: Limit on a whole request, first byte to last; None = unlimited (long generations are legitimate).
    request_timeout: float | None = setting(
        None, "--request-timeout", help="Seconds a whole request may take.", type=float, shown="unlimited"
    )
    #: Hosts tried per request before its error is returned.
    max_attempts: int = setting(3, "--max-attempts", help="Hosts tried per request before its error is returned.")
    #: Keep host addresses out of error texts and `X-OLOL-*` headers: hosts are named `host-N` there.
    hide_hosts: bool = setting(
        False, "--hide-hosts/--show-hosts",
        help="Keep host addresses out of error texts and X-OLOL-* headers: hosts are named host-1, host-2, ... "
        "there, in the order of --servers.",
    )
    #: Continue a stream that broke after its first byte on another host (olol.proxy.resume).
    resume: bool = setting(
        True, "--resume/--no-resume",
        help="Continue a stream whose host fails after the first byte on another host.",
    )
    #: Continuations one request may take before its error line is the answer.
    max_resumes: int = setting(
        2, "--max-resumes", help="Continuations one request may take before its error line is the answer."
    )
    #: Seconds a stream may send nothing before it fails (and resumes elsewhere); None = 10 s plus
    #: four of the host's measured gaps between tokens. Never unbounded.
    stall_timeout: float | None = setting(
        None, "--stall-timeout", help="Seconds a stream may send nothing before it fails (and resumes elsewhere).",
        type=float, shown="10 + 4 of the host's measured gaps between tokens",
    )
    #: Seconds between health/model probes of hosts without a state feed; a dead host is out within 3x this.
    probe_interval: float = setting(
        1.0, "--probe-interval", help="Seconds between health probes; a dead host is out within 3x."
    )
    #: Parallel slots assumed for a plain Ollama host (its OLLAMA_NUM_PARALLEL, which its API does not tell).
    default_parallel: int = setting(4, "--default-parallel", help="Parallel slots assumed for plain Ollama hosts.")
    #: Per-host overrides of `default_parallel`, keyed by server spec.
    host_parallel: dict[str, int] = setting(
        {}, "--host-parallel", help="SERVER=SLOTS (repeatable).", type=list[str], shown="--default-parallel"
    )
    #: Per-host weights (default 1.0): a host with weight 2 is treated as twice as fast by "adaptive".
    host_weights: dict[str, float] = setting(
        {}, "--host-weight", help="SERVER=WEIGHT (repeatable).", type=list[str], shown="1"
    )
    #: Per-host priority tiers (default 0): tier 1 only takes work when every tier-0 host is full.
    host_tiers: dict[str, int] = setting(
        {}, "--host-tier", help="SERVER=TIER, 0 first (repeatable).", type=list[str], shown="0"
    )
    #: Seconds in-flight requests get to finish on SIGTERM/SIGINT before they are cut.
    shutdown_timeout: float = 10.0
    #: Cluster token for agents, HTTPS/TLS, API keys and input limits (docs/security.md); default: open, as before.
    security: SecuritySettings = field(default_factory=SecuritySettings)
    #: Hosts that find the proxy on their own: mDNS, agent registrations, subnet scan; default: off.
    discovery: DiscoverySettings = field(default_factory=DiscoverySettings)
    #: Directory of durable state (chat sessions in `sessions.db`); None keeps sessions in memory.
    #: `olol proxy` defaults it to the XDG state dir (`$XDG_STATE_HOME/olol`, else ~/.local/state/olol).
    state_dir: str | None = setting(
        None, "--state-dir", help="Where chat sessions are kept (sessions.db).", env="OLOL_STATE_DIR",
        shown="$XDG_STATE_HOME/olol or ~/.local/state/olol",
    )
    #: Seconds a chat session may stay idle before it expires; 0 = never.
    session_ttl: float = setting(
        7 * 24 * 3600.0, "--session-ttl", help="Seconds a chat session may stay idle before it expires; 0 = never.",
        shown="604800 (7 days)",
    )
    #: Port of the chat sessions gRPC service (olol.sessions.v1.Sessions); None = off, 0 = a free port.
    grpc_port: int | None = setting(
        None, "--grpc-port", help="Also serve chat sessions over gRPC (olol.sessions.v1) on this port; 0 = a free one.",
        type=int, shown="off",
    )
    #: Copy models between hosts over the LAN instead of downloading them again (olol.placement).
    lan_copy: bool = setting(
        True, "--lan-copy/--no-lan-copy",
        help="Copy models between hosts over the LAN instead of downloading each again.",
    )
    #: Keep every model on at least this many healthy hosts, re-placing it when hosts die; None = off.
    min_replicas: int | None = setting(
        None, "--min-replicas", help="Keep every model on at least this many healthy hosts.", type=int, shown="off"
    )
    #: Seconds a model may be short of replicas (a host restarting) before it is re-placed.
    replica_grace: float = setting(
        30.0, "--replica-grace", help="Seconds a model may be short of replicas before it is re-placed."
    )
    #: Place a model no host has when a request asks for it (the request waits); off by default.
    pull_on_demand: bool = setting(
        False, "--pull-on-demand/--no-pull-on-demand",
        help="Place a model no host has when a request asks for it (the request waits).",
    )
    #: Where the proxy stages copies it relays into plain Ollama hosts; None = ~/.cache/olol/transfer.
    transfer_dir: str | None = setting(
        None, "--transfer-dir", help="Where copies relayed into plain Ollama hosts are staged.",
        shown="~/.cache/olol/transfer",
    )
    #: Models split across `olol rpc-server` hosts, served as hosts of their own (olol.proxy.distributed).
    distributed: DistributedSettings = field(default_factory=DistributedSettings)
