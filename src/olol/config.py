"""Settings resolution: command-line flag > environment variable > config file > default.

The config file is TOML (`--config FILE` or `$OLOL_CONFIG`); keys may sit at the
top level or in a section named after the mode (`[server]`, `[proxy]`, ...), and
the mode's section wins over the top level.

A config dataclass declares each setting once, with `setting(default, "--flag", help=..., env=...)`:
the CLI's option, its `[default: ...]` and `[env var: ...]` help, the TOML key and the resolution
order are all made from that one declaration (`olol.cli.options`).
"""

from __future__ import annotations

import copy
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["FLAG", "ConfigError", "Flag", "Settings", "coerce", "load_file", "setting"]

#: The key of a dataclass field's metadata that holds its `Flag`.
FLAG = "olol_flag"


@dataclass(frozen=True)
class Flag:
    """How a setting is given from outside; its default is the dataclass field's own."""

    names: tuple[str, ...]  # "--port", "-p"; "--async/--threaded" for a switch
    help: str
    env: str | None = None  # None: OLOL_<MODE>_<KEY>, made by the CLI
    key: str | None = None  # TOML key; None: the field's name
    shown: str | None = None  # the default as --help says it, where the value says it badly (None, a path)
    type: Any = None  # the value's type where the default (None, []) does not tell it: int, list[str]


def setting(
    default: T,
    *names: str,
    help: str,
    env: str | None = None,
    key: str | None = None,
    shown: str | None = None,
    type: Any = None,
) -> T:
    """A config dataclass field that is also a command-line flag (see the module's docstring)."""
    flag = Flag(names, help, env, key, shown, type)
    if isinstance(default, list | dict):  # a mutable default is made afresh for each instance
        return field(default_factory=lambda: copy.copy(default), metadata={FLAG: flag})
    return field(default=default, metadata={FLAG: flag})


class ConfigError(ValueError):
    pass


def load_file(path: str | Path | None) -> dict[str, Any]:
    if not path:
        return {}
    p = Path(path).expanduser()
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {p} is not valid TOML: {exc}") from None


class Settings:
    """Resolves each setting of one mode from its four sources."""

    def __init__(
        self, section: str, file_data: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> None:
        data = dict(file_data or {})
        mode = data.get(section, {})
        self._file = {k: v for k, v in data.items() if not isinstance(v, dict)}
        self._file.update(mode if isinstance(mode, dict) else {})
        self._env = os.environ if environ is None else environ
        self.section = section

    def get(
        self, key: str, flag: T | None, default: T, *, env: str | None = None, parse: Callable[[str], T] | None = None
    ) -> T:
        if flag is not None:
            return flag
        if env and env in self._env and self._env[env] != "":
            raw = self._env[env]
            try:
                return parse(raw) if parse else coerce(raw, default)
            except ValueError as exc:
                raise ConfigError(f"${env}={raw!r}: {exc}") from None
        file_key = key.replace("-", "_")
        if file_key in self._file:
            value = self._file[file_key]
            if (
                default is not None
                and not isinstance(value, type(default))
                and not (isinstance(default, float) and isinstance(value, int))
            ):
                raise ConfigError(
                    f"config [{self.section}] {file_key}: expected {type(default).__name__}, got {value!r}"
                )
            return value  # type: ignore[no-any-return]
        return default


def coerce(raw: str, default: Any) -> Any:
    """An environment variable's text as a value of the default's type (a list: comma-separated)."""
    if isinstance(default, bool):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError("expected a boolean")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, list):
        return [part.strip() for part in raw.split(",") if part.strip()]
    if isinstance(default, dict):  # SPEC=VALUE,SPEC=VALUE (a value's type is the reader's to check)
        pairs = [part.strip().rpartition("=") for part in raw.split(",") if part.strip()]
        if any(not spec or not sep for spec, sep, _ in pairs):
            raise ValueError("expected SPEC=VALUE,SPEC=VALUE")
        return {spec: value for spec, _, value in pairs}
    return raw
