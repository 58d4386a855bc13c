"""`olol status`: the cluster as a table, from the proxy's `/api/status`.

Imports inside functions are start-up cost kept off the other commands (see `olol.cli`).
"""

from __future__ import annotations

import json
import urllib.error
from typing import TYPE_CHECKING, Any

import typer

from olol.cli import security_options as sec
from olol.cli.common import PROXY_URL_OPTION, fail, failure, json_option, read_proxy_json
from olol.cli.options import Given, settings_options
from olol.config import ConfigError

if TYPE_CHECKING:
    from olol.client.credentials import ClientCredentials

__all__ = ["fetch_status", "register", "render_status", "settings_summary"]


def fetch_status(url: str, timeout: float = 5.0, credentials: ClientCredentials | None = None) -> dict[str, Any]:
    """The proxy's /api/status (a read-only API key is enough)."""
    from olol.client.credentials import ClientCredentials

    return read_proxy_json(url, "/api/status", credentials or ClientCredentials(), timeout)


def render_status(status: dict[str, Any]) -> Any:
    """A rich renderable: one row per host, then a line on sessions and queues."""
    from rich.console import Group
    from rich.text import Text

    from olol.cli.layout import FittedTable

    rows = []
    for host in status.get("hosts", []):
        stats = list((host.get("latency") or {}).values())
        ttft = [s["ttft_s"] for s in stats if s.get("ttft_s")]
        tps = [s["tokens_per_s"] for s in stats if s.get("tokens_per_s")]
        name = str(host.get("state") or ("up" if host.get("healthy") else "down"))
        state = Text(name, style={"up": "green", "draining": "yellow"}.get(name, "red"))
        if name == "down" and host.get("last_error"):  # why, which only --json showed before
            state.append(f": {host['last_error']}")
        rows.append([
            str(host.get("id")),
            str(host.get("kind", "")),
            state,
            f"{host.get('in_flight', 0)}/{host.get('capacity', '?')}",
            "\n".join(host.get("models") or []) or "-",  # one name a line: never broken mid-name
            "\n".join(host.get("loaded") or []) or "-",
            f"{min(ttft) * 1000:.1f}" if ttft else "-",
            f"{max(tps):.0f}" if tps else "-",
        ])
    table = FittedTable(
        f"OLOL cluster ({status.get('balancer', '?')} routing)",
        ("host", "kind", "state", "load", "models", "loaded", "TTFT ms", "tok/s"),
        rows,
        wrap=("state",),
    )
    sessions = status.get("sessions") or {}
    rate = sessions.get("hit_rate")
    queued = sum(
        int(v.get("depth", 0)) if isinstance(v, dict) else int(v) for v in (status.get("queues") or {}).values()
    )
    footer = Text(
        f"sessions: {sessions.get('sessions', 0)}  affinity hit rate: "
        f"{'-' if rate is None else f'{rate:.0%}'}  queued: {queued}  "
        f"uptime: {status.get('uptime_s', 0):.0f}s"
    )
    lines: list[Any] = [table, footer]
    for host in status.get("hosts", []):
        tuned = (host.get("hardware") or {}).get("settings")
        if tuned:
            lines.append(Text(f"{host.get('id')}: {settings_summary(tuned)}"))
    split = (status.get("distributed") or {}).get("active")
    workers = (status.get("distributed") or {}).get("rpc_servers") or status.get("rpc_servers") or []
    if split or workers:
        model = f"{split.get('model')} on {split.get('host')}" if split else "none"
        lines.append(Text(f"split model: {model}  rpc-servers: {', '.join(workers) or '-'}"))
    return Group(*lines)


def settings_summary(settings: dict[str, str]) -> str:
    """One line of a host's tuning in force (`olol server` reports it: flags, OLLAMA_* variables, config)."""
    from rich.filesize import decimal

    parts = [
        f"flash attention {'on' if settings.get('flash_attention') == 'true' else 'off'}",
        f"kv cache {settings.get('kv_cache_type', 'f16')}",
        f"context {settings.get('context_window') or 'default'}",
        f"keep_alive {settings.get('keep_alive', '5m')}",
        f"load timeout {settings.get('load_timeout', '300')}s",
    ]
    if settings.get("numa") == "true":
        parts.append("numa")
    if settings.get("memory_lock") == "true":
        parts.append("mlock")
    if settings.get("debug") == "true":
        parts.append("debug")
    if cap := settings.get("max_memory"):
        parts.append(f"max memory {decimal(int(cap))}")
    return ", ".join(parts)


def register(app: typer.Typer) -> None:
    @app.command("status")
    @settings_options(sec.ClientCredentials, env_prefix="OLOL_")
    def status(
        given: Given,
        url: str = PROXY_URL_OPTION,
        as_json: bool = json_option("the raw /api/status JSON"),
    ) -> None:
        """Show the cluster: hosts, health, load, models, latency (from a running proxy)."""
        try:
            credentials = sec.client_credentials(given)
        except ConfigError as exc:
            fail(str(exc))
        try:
            data = fetch_status(url, credentials=credentials)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            typer.echo(f"error: {failure(url, exc)}", err=True)
            raise typer.Exit(code=1) from None
        if as_json:
            typer.echo(json.dumps(data, indent=2))
            return
        from rich.console import Console

        Console().print(render_status(data))
