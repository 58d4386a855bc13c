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
    show_default=False,
    show_envvar=False,
    help="TOML config file (\\[MODE] section or top-level keys). Precedence: flag > env > file > default.  "
    "\\[env var: OLOL_CONFIG]  \\[default: none]",
)
LOG_LEVEL_OPTION = typer.Option(
    None, "--log-level", help="debug, info, warning, error.  \\[env var: OLOL_LOG_LEVEL]  \\[default: info]"
)
#: `olol server`'s: the host's Ollama variable counts too (as OLLAMA_DEBUG does for --debug).
SERVER_LOG_LEVEL_OPTION = typer.Option(
    None,
    "--log-level",
    help="debug, info, warning, error.  \\[env var: OLOL_LOG_LEVEL, then OLLAMA_LOG_LEVEL]  \\[default: info]",
)

#: The proxy a client command talks to (`olol status`, `pull`, `models`, `drain`, `undrain`).
PROXY_URL_OPTION = typer.Option(
    "http://localhost:8000", "--url", "-u", envvar="OLOL_PROXY_URL", help="The proxy's URL."
)


def json_option(what: str) -> Any:
    """`--json` of the commands that print tables: `what` is printed instead (OLOL_JSON=1 for scripts)."""
    return typer.Option(False, "--json", envvar="OLOL_JSON", show_envvar=False,
                        help=f"Print {what}.  \\[env var: OLOL_JSON]  \\[default: off]")


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


#: Paths only an OLOL proxy serves: a 404 there means the URL is some other server (a plain Ollama).
_OLOL_PATHS = frozenset({"/api/status"})


class NotAnOlolProxy(ValueError):
    """The URL answers, but not as an OLOL proxy does."""


def proxy_url(url: str) -> str:
    """The proxy's base URL; `host:port` works as well (http is assumed), as for `--servers`."""
    url = url.strip().rstrip("/")
    return url if "://" in url else f"http://{url}"


def open_proxy(
    url: str, path: str, credentials: ClientCredentials, *, body: Any = None, timeout: float | None = 10.0
) -> HTTPResponse:
    """GET (or POST `body` as JSON) a proxy path with the client's API key and TLS trust.

    urllib, not aiohttp: a one-shot CLI call should not pay for an event loop's imports.
    Raises urllib's errors (HTTPError carries the proxy's {"error": ...} body).
    """
    headers = {"Content-Type": "application/json", **credentials.http_headers()} if body is not None else \
        credentials.http_headers()
    url = proxy_url(url)
    request = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers=headers,
        method="POST" if body is not None else "GET",
    )
    tls = credentials.ssl_context() if url.startswith("https://") else None
    response: HTTPResponse = urllib.request.urlopen(request, timeout=timeout, context=tls)
    return response


def read_proxy_json(url: str, path: str, credentials: ClientCredentials, timeout: float = 10.0) -> dict[str, Any]:
    try:
        with open_proxy(url, path, credentials, timeout=timeout) as resp:
            data: dict[str, Any] = json.load(resp)
    except urllib.error.HTTPError as exc:
        if exc.code == 404 and path in _OLOL_PATHS:
            raise NotAnOlolProxy(
                f"{proxy_url(url)} is not an OLOL proxy (it has no {path}; a plain Ollama server?)"
            ) from None
        raise
    return data


def failure(url: str, exc: Exception) -> str:
    """One line on what went wrong talking to the proxy at `url`, naming it."""
    if isinstance(exc, NotAnOlolProxy):
        return str(exc)
    if isinstance(exc, urllib.error.HTTPError):
        return f"{proxy_url(url)} answered {proxy_error(exc)}"
    if isinstance(exc, urllib.error.URLError | OSError):
        return f"cannot reach the proxy at {proxy_url(url)}: {proxy_error(exc)}"
    return f"{proxy_url(url)}: {exc}"


def proxy_error(exc: Exception) -> str:
    """What went wrong talking to a proxy: its own {"error": ...} text for an HTTP error, else the cause."""
    if isinstance(exc, urllib.error.HTTPError):
        detail = exc.read().decode(errors="replace")
        with contextlib.suppress(ValueError, AttributeError):  # not JSON: the text itself
            detail = str(json.loads(detail).get("error", detail))
        detail = detail.strip() or str(exc.reason)
        # Some servers' bodies start with the status already ("404 page not found"): not "404: 404 ...".
        return detail if detail.startswith(str(exc.code)) else f"{exc.code}: {detail}"
    reason = getattr(exc, "reason", None)
    reason = reason if reason is not None else exc
    # "[Errno 111] Connection refused" says less than "Connection refused" and nothing more.
    return getattr(reason, "strerror", None) or str(reason)
