"""Typer options made from a config dataclass's `setting` fields, and their resolution.

Each field declared with `olol.config.setting` becomes one option whose help ends with
`[env var: ...]  [default: ...]`, and resolves flag > env > config file > default through
`olol.config.Settings` under its TOML key: the default, the environment variable and the
help live in the field alone, so they cannot drift apart.

A command may take several such dataclasses: its mode's own and the option bundles it shares
with other modes (`olol.cli.security_options`: token and TLS, discovery, client credentials).

    @app.command("server")
    @settings_options(AgentConfig, sec.TokenTls, env_prefix="OLOL_SERVER_")
    def server(given: Given, config: Path = CONFIG_OPTION) -> None:
        cfg = AgentConfig(**resolve(AgentConfig, s, given, env_prefix="OLOL_SERVER_"), security=...)
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.markup import escape

from olol.config import FLAG, Flag, Settings, coerce

__all__ = ["Given", "env_var", "flagged", "help_text", "resolve", "settings_options"]

#: The flags a command was given for its dataclass's settings, by field name (None: not given).
Given = dict[str, Any]
F = TypeVar("F", bound=Callable[..., Any])


def flagged(cls: type) -> list[tuple[dataclasses.Field[Any], Flag]]:
    """The fields of `cls` that are settings, in declaration order."""
    return [(f, f.metadata[FLAG]) for f in dataclasses.fields(cls) if FLAG in f.metadata]


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def env_var(f: dataclasses.Field[Any], flag: Flag, env_prefix: str) -> str:
    return flag.env or env_prefix + (flag.key or f.name).upper()


def _shown(f: dataclasses.Field[Any], flag: Flag) -> str:
    if flag.shown is not None:
        return flag.shown
    value = _default(f)
    if isinstance(value, list | dict):
        return ", ".join(map(str, value)) or "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def help_text(f: dataclasses.Field[Any], flag: Flag, env_prefix: str) -> str:
    # Escaped: typer reads help as rich markup, where a bare `[default: ...]` is a tag and vanishes.
    many = ", comma separated" if isinstance(_default(f), list) else ""  # how the env var gives a list
    return escape(f"{flag.help}  [env var: {env_var(f, flag, env_prefix)}{many}]  [default: {_shown(f, flag)}]")


def _type(f: dataclasses.Field[Any], flag: Flag) -> Any:
    if flag.type is not None:
        return flag.type
    value = _default(f)
    return type(value) if value is not None else str


def settings_options(*classes: type, env_prefix: str) -> Callable[[F], F]:
    """Give the decorated command one option per setting of `classes`; it receives them as `given`."""

    def decorate(command: F) -> F:
        own = [p for name, p in inspect.signature(command).parameters.items() if name != "given"]
        generated = [
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=typer.Option(None, *flag.names, help=help_text(f, flag, env_prefix), show_default=False),
                annotation=_type(f, flag),
            )
            for cls in classes
            for f, flag in flagged(cls)
        ]
        names = {p.name for p in generated}
        assert len(names) == len(generated), f"two settings of one name in {classes}"

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            given = {name: kwargs.pop(name) for name in names}
            return command(given=given, **kwargs)

        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
        wrapper.__signature__ = inspect.Signature(generated + own)  # type: ignore[attr-defined]
        hints = {p.name: p.annotation for p in generated}
        hints.update({k: v for k, v in inspect.get_annotations(command, eval_str=True).items() if k != "given"})
        wrapper.__annotations__ = hints
        del wrapper.__wrapped__  # typer must read the signature above, not the command's own
        return wrapper  # type: ignore[return-value]

    return decorate


def _parser(kind: Any) -> Callable[[str], Any] | None:
    """How to read the environment variable of a setting whose default (None) does not tell its type."""
    if kind is bool:
        return lambda raw: coerce(raw, False)
    return kind if kind in (int, float) else None


def resolve(cls: type, s: Settings, given: Given, *, env_prefix: str) -> dict[str, Any]:
    """Each setting of `cls`: the flag given, else its environment variable, else the file, else the default."""
    out: dict[str, Any] = {}
    for f, flag in flagged(cls):
        kind = _type(f, flag)
        parse = _parser(kind) if _default(f) is None else None
        given_value = given.get(f.name)
        if given_value == [] or given_value == {}:  # a repeatable option given no times
            given_value = None
        out[f.name] = s.get(flag.key or f.name, given_value, _default(f), env=env_var(f, flag, env_prefix),
                            parse=parse)
    return out
