"""/etc/olol/*.toml: valid TOML as shipped and uncommented, keys the modes read, defaults that are true.

The truth is each mode's CLI: every setting of the dataclasses its command lists in `SETTINGS`
(`olol.config.setting` fields: key and default), and every `s.get("key", flag, default, ...)` call
left in src/olol/cli/<mode>.py (and the modules it declares options in: olol server's host tuning in
cli/host_options.py), names a setting the config file may hold and its default.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import importlib
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from olol.cli.options import flagged
from tests.packaging._support import COMMON, MODES, ROOT

COMMENTED_SETTING = re.compile(r"^#(\[[a-z_.-]+\]|[A-Za-z_\"][^=]* = .+)$")
CLI_MODULE = {"proxy": ("proxy.py",), "server": ("server.py", "host_options.py"), "rpc-server": ("rpc.py",)}
NO_DEFAULT = object()


def uncommented(path: Path) -> dict[str, Any]:
    """The file with every commented-out setting (and sub-table header) switched on."""
    lines = [line[1:] if COMMENTED_SETTING.match(line) else line for line in path.read_text().splitlines()]
    return tomllib.loads("\n".join(lines))


def shown(mode: str) -> dict[str, Any]:
    section: dict[str, Any] = uncommented(COMMON / "config" / f"{mode}.toml")[mode]
    return section


def read_by_cli(mode: str) -> dict[str, object]:
    """key -> default of every setting the mode's CLI reads (NO_DEFAULT where it is not a literal)."""
    trees = [ast.parse((ROOT / "src/olol/cli" / module).read_text()) for module in CLI_MODULE[mode]]
    keys: dict[str, object] = {"log_level": "info"}  # read by cli.common.setup_logging
    module = importlib.import_module("olol.cli." + CLI_MODULE[mode][0].removesuffix(".py"))
    for cls in module.SETTINGS:
        for f, flag in flagged(cls):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            keys[flag.key or f.name] = default
    for node in (node for tree in trees for node in ast.walk(tree)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "s"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            default: object = NO_DEFAULT
            if len(node.args) >= 3:
                with contextlib.suppress(ValueError):
                    default = ast.literal_eval(node.args[2])
            keys[str(node.args[0].value)] = default
    return keys


@pytest.mark.parametrize("mode", MODES)
def test_config_parses_as_shipped_and_uncommented(mode: str) -> None:
    path = COMMON / "config" / f"{mode}.toml"
    shipped = tomllib.loads(path.read_text())
    assert list(shipped) == [mode], "one section, named after the mode (olol's Settings reads [MODE])"
    assert len(shown(mode)) >= 5, f"{path} documents next to no settings"
    assert "log_level" in shown(mode)
    assert f"journalctl -u olol-{mode}" in path.read_text()


@pytest.mark.parametrize("mode", MODES)
def test_config_keys_are_read_by_the_mode(mode: str) -> None:
    unknown = set(shown(mode)) - set(read_by_cli(mode))
    assert not unknown, f"{mode}.toml documents settings olol {mode} never reads: {sorted(unknown)}"


@pytest.mark.parametrize("mode", MODES)
def test_config_shows_the_real_defaults(mode: str) -> None:
    """A value shown is the default, unless the default is unset (None, empty): then it is an example."""
    defaults = read_by_cli(mode)
    for key, value in shown(mode).items():
        default = defaults[key]
        if default is NO_DEFAULT or default in (None, [], {}, ""):
            continue
        assert value == default, f"{mode}.toml shows {key} = {value!r}, olol {mode} defaults to {default!r}"


def test_rpc_server_config_keeps_the_worker_on_loopback() -> None:
    shipped = tomllib.loads((COMMON / "config/rpc-server.toml").read_text())
    assert shipped["rpc-server"] == {"worker_host": "127.0.0.1"}  # the one setting that is not commented out
    assert read_by_cli("rpc-server")["worker_host"] == "127.0.0.1"


def test_the_cli_extraction_sees_settings() -> None:
    """The checks above are only as good as this: it finds the real settings of each mode."""
    assert {"servers", "balancer", "max_queue"} <= set(read_by_cli("proxy"))
    assert read_by_cli("server")["port"] == 50051
    assert read_by_cli("rpc-server")["port"] == 50052
