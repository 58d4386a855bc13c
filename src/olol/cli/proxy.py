"""`olol proxy`: the cluster's one Ollama-compatible endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from olol.cli import security_options as sec
from olol.cli.common import CONFIG_OPTION, LOG_LEVEL_OPTION, fail, settings, setup_logging
from olol.cli.options import Given, resolve, settings_options
from olol.cli.rpc import as_str, no_grpc_fork_handlers
from olol.config import ConfigError
from olol.proxy.config import ProxyConfig

#: Environment variables of `olol proxy`'s settings that have no historical name of their own.
ENV_PREFIX = "OLOL_PROXY_"


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


def check_servers(servers: list[str]) -> None:
    """A typo'd scheme (`htp://`) would be taken for an agent's address and fail at every probe."""
    for spec in servers:
        scheme, sep, _ = spec.partition("://")
        if sep and scheme.lower() not in ("http", "https"):
            raise ConfigError(
                f"server {spec!r}: unknown scheme {scheme}:// (http:// or https:// for an Ollama server, "
                "host:port for an OLOL agent)"
            )


def register(app: typer.Typer) -> None:
    @app.command("proxy")
    @settings_options(ProxyConfig, env_prefix=ENV_PREFIX)
    def proxy(
        given: Given,
        servers: list[str] = typer.Option(
            None,
            "--servers",
            "-s",
            show_default=False,
            help="Hosts, comma-separated or repeated: agents as host:50051, plain "
            "Ollama as http://host:11434 \\[env var: OLLAMA_SERVERS].",
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
        strict_fields: bool = sec.STRICT_FIELDS,
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
            from olol.sessions import default_state_dir

            cfg = ProxyConfig(
                **resolve(ProxyConfig, s, given, env_prefix=ENV_PREFIX),
                servers=s.get("servers", _servers(servers), [], env="OLLAMA_SERVERS"),
                host_parallel=s.get("host_parallel", _pairs(host_parallel, "host-parallel", int), {}),
                host_weights=s.get("host_weights", _pairs(host_weight, "host-weight", float), {}),
                host_tiers=s.get("host_tiers", _pairs(host_tier, "host-tier", int), {}),
                state_dir=s.get("state_dir", state_dir, str(default_state_dir()), env="OLOL_STATE_DIR"),
                security=sec.security_settings(
                    s, token=token, token_file=token_file, tls_cert=tls_cert, tls_key=tls_key, tls_ca=tls_ca,
                    https=https, https_client_auth=https_client_auth, api_key=api_key, api_keys_file=api_keys_file,
                    max_body=max_body, body_timeout=body_timeout, rate_limit=rate_limit, rate_burst=rate_burst,
                    strict_fields=strict_fields,
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
        try:
            check_servers(cfg.servers)
        except ConfigError as exc:
            fail(str(exc))
        from olol.proxy.server import serve

        try:
            serve(cfg)
        except (ValueError, OSError) as exc:
            fail(str(exc), code=1)
