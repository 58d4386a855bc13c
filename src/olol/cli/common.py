"""What every mode's command shares: settings sources and logging."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from olol.config import ConfigError, Settings, load_file

CONFIG_OPTION = typer.Option(
    None,
    "--config",
    "-c",
    envvar="OLOL_CONFIG",
    help="TOML config file ([MODE] section or top-level keys). Precedence: flag > env > file > default.",
)
LOG_LEVEL_OPTION = typer.Option(None, "--log-level", help="debug, info, warning, error [env: OLOL_LOG_LEVEL].")


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


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=code)
