"""`olol drain HOST` and `olol undrain HOST`: take a host out of routing (its open streams finish) and back."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from olol.cli import security_options as sec
from olol.cli.common import fail, open_proxy, proxy_error
from olol.config import ConfigError

if TYPE_CHECKING:
    from olol.client.credentials import ClientCredentials

__all__ = ["register", "set_draining"]

URL_OPTION = typer.Option(
    "http://localhost:8000", "--url", "-u", envvar="OLOL_PROXY_URL", help="The proxy's URL [env: OLOL_PROXY_URL]."
)


def set_draining(url: str, host: str, draining: bool, credentials: ClientCredentials) -> dict[str, object]:
    """POST /api/hosts/{host}/drain (or /undrain); the proxy's reply, or urllib's error."""
    path = f"/api/hosts/{urllib.parse.quote(host, safe='')}/{'drain' if draining else 'undrain'}"
    with open_proxy(url, path, credentials, body={}) as resp:
        reply: dict[str, object] = json.load(resp)
    return reply


def _run(url: str, host: str, draining: bool, api_key: str | None, ca: Path | None, cert: Path | None,
         key: Path | None) -> None:
    try:
        credentials = sec.client_credentials(api_key=api_key, ca=ca, cert=cert, key=key)
    except ConfigError as exc:
        fail(str(exc))
    try:
        reply = set_draining(url, host, draining, credentials)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        typer.echo(f"error: {proxy_error(exc)}", err=True)
        raise typer.Exit(code=1) from None
    if draining:
        typer.echo(f"{reply['id']}: draining ({reply['in_flight']} request(s) still open there)")
    else:
        typer.echo(f"{reply['id']}: {reply['state']}")


def register(app: typer.Typer) -> None:
    @app.command("drain")
    def drain(
        host: str = typer.Argument(..., help="The host's id as `olol status` shows it (e.g. gpu1:50051)."),
        url: str = URL_OPTION,
        api_key: str = sec.CLIENT_API_KEY,
        ca: Path = sec.CLIENT_CA,
        cert: Path = sec.CLIENT_CERT,
        client_key: Path = sec.CLIENT_KEY,
    ) -> None:
        """Stop routing new requests to HOST; the requests it serves now run to the end."""
        _run(url, host, True, api_key, ca, cert, client_key)

    @app.command("undrain")
    def undrain(
        host: str = typer.Argument(..., help="The host's id as `olol status` shows it."),
        url: str = URL_OPTION,
        api_key: str = sec.CLIENT_API_KEY,
        ca: Path = sec.CLIENT_CA,
        cert: Path = sec.CLIENT_CERT,
        client_key: Path = sec.CLIENT_KEY,
    ) -> None:
        """Route new requests to HOST again."""
        _run(url, host, False, api_key, ca, cert, client_key)
