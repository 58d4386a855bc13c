"""What every mode's command shares: settings sources, logging, and reading a (secured) proxy."""

from __future__ import annotations

import contextlib
import json
import logging
import urllib.error
import urllib.request
from http.client import HTTPResponse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from olol.config import ConfigError, Settings, load_file

if TYPE_CHECKING:
    from olol.client.credentials import ClientCredentials

CONFIG_OPTION = typer.Option(
    None,
    "--config",
    "-c",
    envvar="OLOL_CONFIG",
    help="TOML config file ([MODE] section or top-level keys). Precedence: flag > env > file > default.",
)
LOG_LEVEL_OPTION = typer.Option(None, "--log-level", help="debug, info, warning, error \\[env var: OLOL_LOG_LEVEL].")


def settings(section: str, config: Path | None) -> Settings:
    try:
        return Settings(section, load_file(config))
    except ConfigError as exc:
        fail(str(exc))
        raise  # unreachable; keeps type checkers content


def setup_logging(s: Settings, flag: str | None) -> None:
    level = s.get("log_level", flag, "info", env="OLOL_LOG_LEVEL").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        fail(f"invalid log level {level.lower()!r}")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def parse_size(text: str) -> int:
    """A byte count as people write it: 12GiB, 512M, 1.5g, 1048576."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    text = text.strip().lower().removesuffix("ib").removesuffix("b")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=code)


def open_proxy(
    url: str, path: str, credentials: ClientCredentials, *, body: Any = None, timeout: float | None = 10.0
) -> HTTPResponse:
    """GET (or POST `body` as JSON) a proxy path with the client's API key and TLS trust.

    urllib, not aiohttp: a one-shot CLI call should not pay for an event loop's imports.
    Raises urllib's errors (HTTPError carries the proxy's {"error": ...} body).
    """
    headers = {"Content-Type": "application/json", **credentials.http_headers()} if body is not None else \
        credentials.http_headers()
    request = urllib.request.Request(
        url.rstrip("/") + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers=headers,
        method="POST" if body is not None else "GET",
    )
    tls = credentials.ssl_context() if url.startswith("https://") else None
    response: HTTPResponse = urllib.request.urlopen(request, timeout=timeout, context=tls)
    return response


def read_proxy_json(url: str, path: str, credentials: ClientCredentials, timeout: float = 10.0) -> dict[str, Any]:
    with open_proxy(url, path, credentials, timeout=timeout) as resp:
        data: dict[str, Any] = json.load(resp)
    return data


def proxy_error(exc: Exception) -> str:
    """What went wrong talking to a proxy: its own {"error": ...} text for an HTTP error, else the cause."""
    if isinstance(exc, urllib.error.HTTPError):
        detail = exc.read().decode(errors="replace")
        with contextlib.suppress(ValueError, AttributeError):  # not JSON: the text itself
            detail = str(json.loads(detail).get("error", detail))
        return f"{exc.code}: {detail.strip() or exc.reason}"
    reason = getattr(exc, "reason", None)
    return str(reason if reason is not None else exc)
