"""`olol drain HOST` and `olol undrain HOST`: take a host out of routing (its open streams finish) and back."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
from typing import TYPE_CHECKING

import typer

from olol.cli import security_options as sec
from olol.cli.common import PROXY_URL_OPTION, fail, open_proxy, proxy_error
from olol.cli.options import Given, settings_options
from olol.config import ConfigError

if TYPE_CHECKING:
    from olol.client.credentials import ClientCredentials

__all__ = ["register", "set_draining"]



def set_draining(url: str, host: str, draining: bool, credentials: ClientCredentials) -> dict[str, object]:
    """POST /api/hosts/{host}/drain (or /undrain); the proxy's reply, or urllib's error."""
    path = f"/api/hosts/{urllib.parse.quote(host, safe='')}/{'drain' if draining else 'undrain'}"
    with open_proxy(url, path, credentials, body={}) as resp:
        reply: dict[str, object] = json.load(resp)
    return reply


def _run(url: str, host: str, draining: bool, given: Given) -> None:
    try:
        credentials = sec.client_credentials(given)
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
    @settings_options(sec.ClientCredentials, env_prefix="OLOL_")
    def drain(
        given: Given,
        host: str = typer.Argument(..., help="The host's id as `olol status` shows it (e.g. gpu1:50051)."),
        url: str = PROXY_URL_OPTION,
    ) -> None:
        """Stop routing new requests to HOST; the requests it serves now run to the end."""
        _run(url, host, True, given)

    @app.command("undrain")
    @settings_options(sec.ClientCredentials, env_prefix="OLOL_")
    def undrain(
        given: Given,
        host: str = typer.Argument(..., help="The host's id as `olol status` shows it."),
        url: str = PROXY_URL_OPTION,
    ) -> None:
        """Route new requests to HOST again."""
        _run(url, host, False, given)
