"""`olol pull` and `olol models`: place models on the cluster and see which model is where (via the proxy).

`olol pull MODEL --replicas N` draws one progress bar per host from the proxy's
pull feed (each layer line names its host and that host's totals), prints the
notes the proxy sends (a LAN copy, a fallback, a substitution), and ends with
a table of where the model went and how.

Imports inside functions are start-up cost kept off the other commands (see `olol.cli`).
"""

from __future__ import annotations

import json
import urllib.error
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import typer

from olol.cli import security_options as sec
from olol.cli.common import PROXY_URL_OPTION, fail, failure, json_option, open_proxy, read_proxy_json
from olol.cli.options import Given, settings_options
from olol.cluster.backend import JSON
from olol.config import ConfigError

if TYPE_CHECKING:
    from olol.client.credentials import ClientCredentials

__all__ = ["PullView", "register", "render_models"]




def _stream(url: str, body: JSON, credentials: ClientCredentials) -> Iterator[JSON]:
    try:
        resp = open_proxy(url, "/api/pull", credentials, body=body, timeout=None)
    except urllib.error.HTTPError as exc:
        raise RuntimeError(failure(url, exc)) from None
    with resp:
        for raw in resp:
            if raw.strip():
                yield json.loads(raw)


def _credentials(given: Given) -> ClientCredentials:
    try:
        credentials: ClientCredentials = sec.client_credentials(given)
    except ConfigError as exc:
        fail(str(exc))
        raise  # unreachable; keeps type checkers content
    return credentials


class PullView:
    """Turns the pull feed into rich progress bars, one per host, and a closing summary."""

    def __init__(self, console: Any) -> None:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TextColumn("{task.fields[via]}"),
            console=console,
        )
        self.tasks: dict[str, Any] = {}
        self.final: JSON = {}

    def __enter__(self) -> PullView:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def feed(self, line: JSON) -> None:
        olol = line.get("olol") or {}
        host = olol.get("host")
        if "error" in line or line.get("status") == "success":
            self.final = line
            return
        if "note" in olol or "error" in olol or "skipped" in olol:
            style = "red" if "error" in olol else "yellow" if "skipped" in olol else "cyan"
            self.console.print(f"[{style}]{line.get('status', '')}[/{style}]", highlight=False)
            return
        if host and "completed" in olol:
            task = self.tasks.get(host)
            label = f"{host} {olol.get('model') or ''}".strip()
            if task is None:
                task = self.tasks[host] = self.progress.add_task(label, total=olol.get("total") or None, via="")
            self.progress.update(
                task,
                description=label,
                completed=olol.get("completed", 0),
                total=olol.get("total") or None,
                via=olol.get("via", ""),
            )

    def summary(self) -> Any:
        from rich.table import Table

        report = self.final.get("olol") or {}
        table = Table(title=f"{report.get('model', '')}: placed on {len(report.get('hosts') or [])} host(s)")
        for col in ("host", "model", "how", "result"):
            table.add_column(col)
        for host in report.get("hosts") or []:
            table.add_row(
                host,
                (report.get("models") or {}).get(host, ""),
                (report.get("via") or {}).get(host, ""),
                "[green]ok[/green]",
            )
        for host, why in (report.get("failed") or {}).items():
            table.add_row(host, "", "", f"[red]failed: {why}[/red]")
        for host, why in (report.get("skipped") or {}).items():
            table.add_row(host, "", "", f"[yellow]skipped: {why}[/yellow]")
        return table


def render_models(tags: JSON, status: JSON) -> Any:
    """Which model is where: a row per model with its healthy hosts, and hosts that hold it but are down."""
    from rich.console import Group
    from rich.filesize import decimal
    from rich.text import Text

    from olol.cli.layout import FittedTable
    from olol.cluster import normalize

    down = {h["id"]: h for h in status.get("hosts", []) if not h.get("healthy")}
    placements = status.get("placements") or {}
    minimum = placements.get("min_replicas") or {}
    wanted = dict(minimum.get("models") or {})
    rows = []
    for entry in sorted(tags.get("models", []), key=lambda m: str(m.get("name"))):
        name = str(entry.get("name"))
        hosts = (entry.get("olol") or {}).get("hosts") or []
        gone = [h for h, info in down.items() if normalize(name) in (info.get("models") or [])]
        need = wanted.get(name, minimum.get("default"))
        count = Text(f"{len(hosts)}" + (f"/{need}" if need else ""), style="red" if need and len(hosts) < need else "")
        size = int(entry.get("size") or 0)
        rows.append([
            name,
            decimal(size) if size else "-",  # 1 MB is "1.0 MB", not "0.00 GB"
            str((entry.get("details") or {}).get("quantization_level") or "-"),
            count,
            "\n".join(hosts) or "-",
            "\n".join(gone) or "-",
        ])
    table = FittedTable("Models on the cluster", ("model", "size", "quant", "replicas", "hosts", "down hosts"), rows)
    lines: list[Any] = [table]
    for job in placements.get("running") or []:
        hosts = ", ".join(f"{h} {p['state']} {p['completed']}/{p['total']}" for h, p in job["hosts"].items())
        lines.append(Text(f"placing {job['model']} ({job['reason']}): {hosts}", style="cyan"))
    return Group(*lines)


def register(app: typer.Typer) -> None:
    @app.command("pull")
    @settings_options(sec.ClientCredentials, env_prefix="OLOL_")
    def pull(
        given: Given,
        model: str = typer.Argument(..., help="Model to place, e.g. llama3.2:3b"),
        replicas: int = typer.Option(None, "--replicas", "-r", help="Hosts to place it on (default: the proxy's)."),
        min_replicas: int = typer.Option(
            None, "--min-replicas", help="Keep it on at least this many healthy hosts, re-placing it when one dies."
        ),
        quantize: str = typer.Option(None, "--quantize", "-q", help="Quantization to ask for, e.g. q5_0."),
        hosts: list[str] = typer.Option(None, "--host", help="Place exactly on this host (repeatable)."),
        url: str = PROXY_URL_OPTION,
        as_json: bool = json_option("the proxy's NDJSON feed as it comes"),
    ) -> None:
        """Place a model on the cluster: replicas, LAN copies between hosts, the best quantization per host.

        Examples:
          olol pull llama3.2:3b --replicas 3
          olol pull llama3:8b --quantize q5_0 --min-replicas 2
        """
        from rich.console import Console

        body: JSON = {"model": model, "stream": True}
        for key, value in (
            ("replicas", replicas),
            ("min_replicas", min_replicas),
            ("quantize", quantize),
            ("hosts", hosts or None),
        ):
            if value is not None:
                body[key] = value
        credentials = _credentials(given)
        console = Console()
        view = PullView(console)
        try:
            with view:
                for line in _stream(url, body, credentials):
                    if as_json:
                        typer.echo(json.dumps(line))
                    else:
                        view.feed(line)
                    if "error" in line or line.get("status") == "success":
                        view.final = line
        except RuntimeError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=1) from None
        except (urllib.error.URLError, OSError) as exc:
            typer.echo(f"error: {failure(url, exc)}", err=True)
            raise typer.Exit(code=1) from None
        if "error" in view.final or not view.final:
            typer.echo(f"error: {view.final.get('error', 'the proxy ended the feed without a result')}", err=True)
            raise typer.Exit(code=1)
        if not as_json:
            console.print(view.summary())

    @app.command("models")
    @settings_options(sec.ClientCredentials, env_prefix="OLOL_")
    def models(
        given: Given,
        url: str = PROXY_URL_OPTION,
        as_json: bool = json_option("the raw /api/tags and placement JSON"),
    ) -> None:
        """Show which model is on which host, replicas against --min-replicas, and placements in progress."""
        credentials = _credentials(given)
        try:
            tags = read_proxy_json(url, "/api/tags", credentials)
            status = read_proxy_json(url, "/api/status", credentials)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            typer.echo(f"error: {failure(url, exc)}", err=True)
            raise typer.Exit(code=1) from None
        if as_json:
            typer.echo(json.dumps({"models": tags.get("models", []), "placements": status.get("placements")}, indent=2))
            return
        from rich.console import Console

        Console().print(render_models(tags, status))
