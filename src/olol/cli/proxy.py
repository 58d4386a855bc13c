"""`olol proxy`: the cluster's one Ollama-compatible endpoint.

Imports inside functions are start-up cost kept off the other commands (see `olol.cli`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from olol.cli import security_options as sec
from olol.cli.common import CONFIG_OPTION, LOG_LEVEL_OPTION, fail, settings, setup_logging
from olol.cli.options import Given, resolve, settings_options
from olol.cli.rpc import no_grpc_fork_handlers
from olol.config import ConfigError
from olol.proxy.config import ProxyConfig
from olol.split.settings import DistributedSettings

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


def _cast(pairs: dict[str, Any], what: str, cast: type) -> dict[str, Any]:
    """The values of SERVER=VALUE pairs from the env var or the file, as `cast`."""
    try:
        return {spec: cast(value) for spec, value in pairs.items()}
    except (TypeError, ValueError):
        fail(f"--{what}: every value must be a {cast.__name__}, got {pairs!r}")
        raise  # unreachable; keeps type checkers content


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


#: What `olol proxy` takes: the proxy's settings and the bundles it shares with other modes.
SETTINGS = (ProxyConfig, DistributedSettings, sec.TokenTls, sec.HttpSecurity, sec.Finding, sec.Mdns, sec.Lan)
#: The SERVER=VALUE settings: field, flag, type of the value.
_PAIRS = (("host_parallel", "host-parallel", int), ("host_weights", "host-weight", float),
          ("host_tiers", "host-tier", int))


def register(app: typer.Typer) -> None:
    @app.command("proxy")
    @settings_options(*SETTINGS, env_prefix=ENV_PREFIX)
    def proxy(given: Given, config: Path = CONFIG_OPTION, log_level: str = LOG_LEVEL_OPTION) -> None:
        """Serve the Ollama API (and /v1) for the whole cluster: routing, failover, affinity, fan-out.

        Examples:
          olol proxy --servers 10.0.0.2:50051,10.0.0.3:50051
          olol proxy --port 11434 --servers http://gpu1:11434 --servers gpu2:50051
          olol proxy --servers gpu1:50051 --distributed --rpc-servers gpu1:50052,gpu2:50052,cpu1:50052
        """
        s = settings("proxy", config)
        setup_logging(s, log_level)
        given["servers"] = _servers(given["servers"])
        given["rpc_servers"] = _servers(given["rpc_servers"])
        for name, flag, cast in _PAIRS:
            given[name] = _pairs(given[name], flag, cast)
        try:
            dist = DistributedSettings(**resolve(DistributedSettings, s, given, env_prefix=ENV_PREFIX))
            if dist.enabled:
                no_grpc_fork_handlers()  # before grpc loads (olol.proxy loads it): this proxy spawns llama-server
            from olol.sessions import default_state_dir

            own = resolve(ProxyConfig, s, given, env_prefix=ENV_PREFIX)
            for name, flag, cast in _PAIRS:
                own[name] = _cast(own[name], flag, cast)
            cfg = ProxyConfig(
                **own | {"state_dir": own["state_dir"] or str(default_state_dir())},
                security=sec.security_settings(s, given, ENV_PREFIX, http=True),
                discovery=sec.discovery_settings(s, given, ENV_PREFIX, sec.Finding, sec.Mdns),
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
