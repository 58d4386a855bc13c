"""`olol proxy`: the cluster's one Ollama-compatible endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from olol.cli import security_options as sec
from olol.cli.common import CONFIG_OPTION, LOG_LEVEL_OPTION, fail, settings, setup_logging
from olol.cli.rpc import as_str, no_grpc_fork_handlers
from olol.config import ConfigError


def _pairs(values: list[str] | None, what: str, cast: type) -> dict[str, Any] | None:
    """`SPEC=VALUE` flags (repeatable) -> {SPEC: VALUE}."""
    if not values:
        return None
    out: dict[str, Any] = {}
    for item in values:
        spec, sep, raw = item.rpartition("=")
        if not sep or not spec:
            fail(f"--{what} expects SERVER=VALUE, got {item!r}")
        try:
            out[spec] = cast(raw)
        except ValueError:
            fail(f"--{what} {item!r}: {raw!r} is not a {cast.__name__}")
    return out


def _servers(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [s.strip() for v in values for s in v.split(",") if s.strip()]


def register(app: typer.Typer) -> None:
    @app.command("proxy")
    def proxy(
        host: str = typer.Option(None, "--host",
            help="Address to listen on.  \\[default: 0.0.0.0]", show_default=False),
        port: int = typer.Option(
            None,
            "--port",
            "-p",
            show_default=False,
            help="HTTP port \\[env var: OLOL_PORT]; 11434 makes it a true drop-in for Ollama. \\[default: 8000]",
        ),
        servers: list[str] = typer.Option(
            None,
            "--servers",
            "-s",
            show_default=False,
            help="Hosts, comma-separated or repeated: agents as host:50051, plain "
            "Ollama as http://host:11434 \\[env var: OLLAMA_SERVERS].",
        ),
        balancer: str = typer.Option(
            None,
            "--balancer",
            show_default=False,
            help="Routing policy: adaptive, least_connections, round_robin. \\[default: adaptive]",
        ),
        replicas: int = typer.Option(
            None, "--replicas", help="Hosts an /api/pull goes to (default: every healthy host)."
        ),
        min_replicas: int = typer.Option(
            None, "--min-replicas", help="Keep every model on at least this many healthy hosts (default: off)."
        ),
        replica_grace: float = typer.Option(
            None, "--replica-grace", show_default=False,
            help="Seconds a model may be short of replicas before it is re-placed. \\[default: 30]",
        ),
        lan_copy: bool = typer.Option(
            None, "--lan-copy/--no-lan-copy", show_default=False,
            help="Copy models between hosts over the LAN instead of downloading each again. \\[default: on]",
        ),
        pull_on_demand: bool = typer.Option(
            None, "--pull-on-demand/--no-pull-on-demand", show_default=False,
            help="Place a model no host has when a request asks for it (the request waits). \\[default: off]",
        ),
        transfer_dir: str = typer.Option(
            None, "--transfer-dir", help="Where copies relayed into plain Ollama hosts are staged "
            "(default ~/.cache/olol/transfer).",
        ),
        quant_fallback: bool = typer.Option(
            None,
            "--quant-fallback/--no-quant-fallback",
            show_default=False,
            help="Serve a quantized model with a compatible higher-quality one already on a host.  \\[default: on]",
        ),
        affinity: bool = typer.Option(
            None,
            "--affinity/--no-affinity",
            show_default=False,
            help="Keep a conversation on one host (X-OLOL-Session or prompt prefix). \\[default: on]",
        ),
        max_queue_wait: float = typer.Option(
            None,
            "--max-queue-wait",
            show_default=False,
            help="Seconds a request may wait for a free host before 503. \\[default: 30]",
        ),
        max_queue: int = typer.Option(
            None, "--max-queue", show_default=False, help="Requests that may wait per model.  \\[default: 512]"
        ),
        request_timeout: float = typer.Option(
            None, "--request-timeout", help="Seconds a whole request may take (default: unlimited)."
        ),
        default_parallel: int = typer.Option(
            None,
            "--default-parallel",
            show_default=False,
            help="Parallel slots assumed for plain Ollama hosts.  \\[default: 4]",
        ),
        affinity_load_factor: float = typer.Option(
            None,
            "--affinity-load-factor",
            show_default=False,
            help="A pinned host may hold at most this x the mean load. \\[default: 1.25]",
        ),
        first_byte_timeout: float = typer.Option(
            None,
            "--first-byte-timeout",
            show_default=False,
            help="Seconds a host may take to send its first chunk (model load "
            "included) before the next host is tried.  \\[default: 300]",
        ),
        max_attempts: int = typer.Option(
            None,
            "--max-attempts",
            show_default=False,
            help="Hosts tried per request before its error is returned.  \\[default: 3]",
        ),
        probe_interval: float = typer.Option(
            None,
            "--probe-interval",
            show_default=False,
            help="Seconds between health probes; a dead host is out within 3x. \\[default: 1]",
        ),
        host_parallel: list[str] = typer.Option(None, "--host-parallel", help="SERVER=SLOTS (repeatable)."),
        host_weight: list[str] = typer.Option(None, "--host-weight", help="SERVER=WEIGHT (repeatable)."),
        host_tier: list[str] = typer.Option(None, "--host-tier", help="SERVER=TIER, 0 first (repeatable)."),
        state_dir: str = typer.Option(
            None,
            "--state-dir",
            show_default=False,
            help="Where chat sessions are kept (sessions.db) \\[env var: OLOL_STATE_DIR]. "
            "\\[default: $XDG_STATE_HOME/olol or ~/.local/state/olol]",
        ),
        session_ttl: float = typer.Option(
            None,
            "--session-ttl",
            show_default=False,
            help="Seconds a chat session may stay idle before it expires; 0 = never. \\[default: 604800 (7 days)]",
        ),
        grpc_port: int = typer.Option(
            None,
            "--grpc-port",
            show_default=False,
            help="Also serve chat sessions over gRPC (olol.sessions.v1) on this port; 0 = a free one. \\[default: off]",
        ),
        distributed: bool = typer.Option(
            None, "--distributed/--no-distributed", show_default=False,
            help="Serve models split across --rpc-servers (llama.cpp RPC) as hosts of their own \\[env var: "
            "OLOL_DISTRIBUTED]. \\[default: on when rpc-servers are given]",
        ),
        rpc_servers: list[str] = typer.Option(
            None, "--rpc-servers", show_default=False,
            help="`olol rpc-server` hosts a split model runs on, in split order (by latency, the one holding the "
            "output layer may move last): h1:50052,h2:50052 \\[env var: OLOL_RPC_SERVERS].",
        ),
        dist_model: list[str] = typer.Option(
            None, "--dist-model", show_default=False,
            help="A model to split: an Ollama NAME, or NAME=PATH to a GGUF (repeatable); the first is split at "
            "start-up.",
        ),
        dist_auto: bool = typer.Option(
            None, "--dist-auto/--no-dist-auto", show_default=False,
            help="Split a requested model when no host that has it has the memory for it (GGUF size + KV "
            "cache vs free memory); options.distributed=true always splits. \\[default: on]",
        ),
        dist_transport: str = typer.Option(
            None, "--dist-transport", show_default=False,
            help="tunnel (cluster token, optional TLS; the rpc-servers' data ports, else gRPC messages), "
            "grpc (the tunnel in gRPC messages only) or direct (trusted networks). \\[default: tunnel]",
        ),
        dist_ctx_size: int = typer.Option(
            None, "--dist-ctx-size", help="Context tokens of a split model (default: the workers' advice, else 2048)."
        ),
        dist_parallel: int = typer.Option(None, "--dist-parallel", help="Requests a split model serves at once."),
        dist_objective: str = typer.Option(
            None, "--dist-objective", show_default=False,
            help="What the layer plan minimises: latency (time per token of a request; llama.cpp runs the "
            "stages one after another) or balanced (the slowest stage). \\[default: latency]",
        ),
        models_dir: Path = typer.Option(
            None, "--models-dir", help="Ollama models directory split models are read from \\[env var: OLLAMA_MODELS]."
        ),
        llama_server_bin: str = typer.Option(
            None, "--llama-server-bin", help="llama-server for split models \\[env var: OLOL_LLAMA_SERVER]."
        ),
        token: str = sec.TOKEN,
        token_file: Path = sec.TOKEN_FILE,
        tls_cert: Path = sec.TLS_CERT,
        tls_key: Path = sec.TLS_KEY,
        tls_ca: Path = sec.TLS_CA,
        https: bool = sec.HTTPS,
        https_client_auth: bool = sec.HTTPS_CLIENT_AUTH,
        api_key: list[str] = sec.API_KEY,
        api_keys_file: Path = sec.API_KEYS_FILE,
        max_body: int = sec.MAX_BODY,
        body_timeout: float = sec.BODY_TIMEOUT,
        rate_limit: float = sec.RATE_LIMIT,
        rate_burst: int = sec.RATE_BURST,
        lenient_fields: bool = sec.LENIENT_FIELDS,
        discovery: bool = sec.DISCOVERY_PROXY,
        mdns: bool = sec.MDNS,
        interface: str = sec.INTERFACE,
        cluster: str = sec.CLUSTER,
        scan_subnet: bool = sec.SCAN_SUBNET,
        scan_rate: float = sec.SCAN_RATE,
        config: Path = CONFIG_OPTION,
        log_level: str = LOG_LEVEL_OPTION,
    ) -> None:
        """Serve the Ollama API (and /v1) for the whole cluster: routing, failover, affinity, fan-out.

        Examples:
          olol proxy --servers 10.0.0.2:50051,10.0.0.3:50051
          olol proxy --port 11434 --servers http://gpu1:11434 --servers gpu2:50051
          olol proxy --servers gpu1:50051 --distributed --rpc-servers gpu1:50052,gpu2:50052,cpu1:50052
        """
        from olol.split.settings import DistributedSettings

        s = settings("proxy", config)
        setup_logging(s, log_level)
        try:
            rpc = s.get("rpc_servers", _servers(rpc_servers), [], env="OLOL_RPC_SERVERS")
            dist = DistributedSettings(
                enabled=s.get("distributed", distributed, bool(rpc), env="OLOL_DISTRIBUTED"),
                rpc_servers=rpc,
                models=s.get("dist_models", dist_model or None, []),
                auto=s.get("dist_auto", dist_auto, True),
                transport=s.get("dist_transport", dist_transport, "tunnel"),
                models_dir=s.get("models_dir", as_str(models_dir), None, env="OLLAMA_MODELS"),
                ctx_size=s.get("dist_ctx_size", dist_ctx_size, None),
                parallel=s.get("dist_parallel", dist_parallel, None),
                threads=s.get("dist_threads", None, None),
                margin=s.get("dist_margin", None, 0.1),
                objective=s.get("dist_objective", dist_objective, "latency"),
                llama_server_bin=s.get("llama_server_bin", llama_server_bin, None, env="OLOL_LLAMA_SERVER"),
            )
            if dist.enabled:
                no_grpc_fork_handlers()  # before grpc loads (olol.proxy loads it): this proxy spawns llama-server
            from olol.proxy import ProxyConfig
            from olol.sessions import default_state_dir

            cfg = ProxyConfig(
                host=s.get("host", host, "0.0.0.0"),
                port=s.get("port", port, 8000, env="OLOL_PORT"),
                servers=s.get("servers", _servers(servers), [], env="OLLAMA_SERVERS"),
                balancer=s.get("balancer", balancer, "adaptive"),
                replicas=s.get("replicas", replicas, None),
                min_replicas=s.get("min_replicas", min_replicas, None),
                replica_grace=s.get("replica_grace", replica_grace, 30.0),
                lan_copy=s.get("lan_copy", lan_copy, True),
                pull_on_demand=s.get("pull_on_demand", pull_on_demand, False),
                transfer_dir=s.get("transfer_dir", transfer_dir, None),
                quant_fallback=s.get("quant_fallback", quant_fallback, True),
                affinity=s.get("affinity", affinity, True),
                max_queue_wait=s.get("max_queue_wait", max_queue_wait, 30.0),
                max_queue=s.get("max_queue", max_queue, 512),
                request_timeout=s.get("request_timeout", request_timeout, None),
                default_parallel=s.get("default_parallel", default_parallel, 4),
                affinity_load_factor=s.get("affinity_load_factor", affinity_load_factor, 1.25),
                first_byte_timeout=s.get("first_byte_timeout", first_byte_timeout, 300.0),
                max_attempts=s.get("max_attempts", max_attempts, 3),
                probe_interval=s.get("probe_interval", probe_interval, 1.0),
                host_parallel=s.get("host_parallel", _pairs(host_parallel, "host-parallel", int), {}),
                host_weights=s.get("host_weights", _pairs(host_weight, "host-weight", float), {}),
                host_tiers=s.get("host_tiers", _pairs(host_tier, "host-tier", int), {}),
                state_dir=s.get("state_dir", state_dir, str(default_state_dir()), env="OLOL_STATE_DIR"),
                session_ttl=s.get("session_ttl", session_ttl, 7 * 24 * 3600.0),
                grpc_port=s.get("grpc_port", grpc_port, None),
                security=sec.security_settings(
                    s, token=token, token_file=token_file, tls_cert=tls_cert, tls_key=tls_key, tls_ca=tls_ca,
                    https=https, https_client_auth=https_client_auth, api_key=api_key, api_keys_file=api_keys_file,
                    max_body=max_body, body_timeout=body_timeout, rate_limit=rate_limit, rate_burst=rate_burst,
                    lenient_fields=lenient_fields,
                ),
                discovery=sec.discovery_settings(
                    s, discovery=discovery, mdns=mdns, interface=interface, cluster=cluster, scan_subnet=scan_subnet,
                    scan_rate=scan_rate,
                ),
                distributed=dist,
            )
        except (ConfigError, ValueError) as exc:
            fail(str(exc))
        if cfg.distributed.enabled and not (cfg.distributed.rpc_servers or cfg.discovery.enabled):
            fail("--distributed needs rpc-servers: --rpc-servers h1:50052,h2:50052 (or --discovery to find them)")
        if not cfg.servers and not (cfg.discovery.enabled or cfg.discovery.scan_subnet or cfg.distributed.enabled):
            fail("no hosts: give --servers (or $OLLAMA_SERVERS, or `servers = [...]` in the config file)")
        from olol.proxy.server import serve

        try:
            serve(cfg)
        except (ValueError, OSError) as exc:
            fail(str(exc), code=1)
