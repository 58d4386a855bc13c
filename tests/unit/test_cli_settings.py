"""Settings declared once on the config dataclass: the option, its help, and its resolution come from there."""

from __future__ import annotations

import re
from typing import Any

import pytest
from typer.testing import CliRunner

from olol.agent.config import AgentConfig
from olol.cli import app
from olol.cli import client as client_cmd
from olol.cli import dist as dist_cmd
from olol.cli import proxy as proxy_cmd
from olol.cli import rpc as rpc_cmd
from olol.cli import security_options as sec
from olol.cli import server as server_cmd
from olol.cli.options import env_var, flagged, resolve
from olol.cli.server import ENV_PREFIX
from olol.config import Settings

runner = CliRunner()
MODES = {
    "server": (server_cmd.SETTINGS, server_cmd.ENV_PREFIX),
    "proxy": (proxy_cmd.SETTINGS, proxy_cmd.ENV_PREFIX),
    "rpc-server": (rpc_cmd.SETTINGS, rpc_cmd.ENV_PREFIX),
    "dist": (dist_cmd.SETTINGS, dist_cmd.ENV_PREFIX),
    "client": ((client_cmd.ClientOptions, sec.ClientCredentials), client_cmd.ENV_PREFIX),
}
NOT_SETTINGS = {"--help"}  # the one option that is no setting


def help_lines(mode: str) -> dict[str, str]:
    """First option name -> the option's help, its wrapped lines joined."""
    out = runner.invoke(app, [mode, "--help"], terminal_width=400, env={"COLUMNS": "400"}).output
    lines: dict[str, str] = {}
    name = ""
    for line in out.splitlines():
        if re.match(r"^│ +-", line):
            name = line.split()[1].split(",")[0]
            lines[name] = line.strip("│ ")
        elif name and line.startswith("│"):
            lines[name] += " " + line.strip("│ ")
    return {name: re.sub(r"\s+", " ", text) for name, text in lines.items()}


@pytest.mark.parametrize("mode", MODES)
def test_help_shows_every_settings_default_and_env_var(mode: str) -> None:
    classes, prefix = MODES[mode]
    lines = help_lines(mode)
    assert all(flagged(cls) for cls in classes), "the command's dataclasses declare their settings"
    for cls in classes:
        for f, flag in flagged(cls):
            line = lines[flag.names[0].split("/")[0]]
            default = f.default_factory() if callable(f.default_factory) else f.default
            many = ", comma separated" if isinstance(default, list) else ""  # a list's env var
            assert f"[env var: {env_var(f, flag, prefix)}{many}]" in line, line
            assert "[default: " in line, line


@pytest.mark.parametrize("mode", MODES)
def test_every_option_of_every_mode_shows_its_default_and_env_var(mode: str) -> None:
    lines = help_lines(mode)
    assert len(lines) > 10
    for name, line in lines.items():
        if name in NOT_SETTINGS:
            continue
        assert "[env var: " in line, f"olol {mode} {name}: {line}"
        assert "[default: " in line, f"olol {mode} {name}: {line}"


@pytest.mark.parametrize("command", ["status", "models"])
def test_the_cluster_views_show_every_default_and_env_var(command: str) -> None:
    lines = help_lines(command)
    assert "--json" in lines and "--url" in lines
    for name, line in lines.items():
        if name not in NOT_SETTINGS:
            assert "[env var: " in line and "[default: " in line, f"olol {command} {name}: {line}"


def test_flag_beats_env_beats_file_beats_default() -> None:
    file = {"server": {"ctx_size": 1024, "port": 6000}}
    env = {"OLOL_SERVER_CTX_SIZE": "4096", "OLOL_SERVER_THREADS": "3"}
    s = Settings("server", file, env)
    got = resolve(AgentConfig, s, {"ctx_size": None, "port": None, "grace": 2.5}, env_prefix=ENV_PREFIX)
    assert got["ctx_size"] == 4096 and got["threads"] == 3  # env over file; typed from the field, not the default
    assert got["port"] == 6000 and got["grace"] == 2.5  # file over default; flag over everything
    assert got["host"] == AgentConfig().host  # nothing given: the dataclass's default
    assert AgentConfig(**got).use_async is False


@pytest.mark.parametrize(("cls", "prefix", "section"), [
    (rpc_cmd.RpcServerOptions, rpc_cmd.ENV_PREFIX, "rpc-server"),
    (dist_cmd.DistOptions, dist_cmd.ENV_PREFIX, "dist"),
    (sec.TokenTls, "OLOL_PROXY_", "proxy"),
    (sec.Advertise, "OLOL_SERVER_", "server"),
])
def test_each_mode_and_bundle_resolves_flag_env_file_default(cls: type, prefix: str, section: str) -> None:
    """For every setting: the flag wins over the env var, the env var over the file, the file over the default."""
    fields = flagged(cls)
    for f, flag in fields:
        default = f.default_factory() if callable(f.default_factory) else f.default
        kind = flag.type or type(default)
        a, b, c = _three(kind)
        key = flag.key or f.name
        var = env_var(f, flag, prefix)
        text = ",".join(b) if isinstance(b, list) else str(b).lower() if isinstance(b, bool) else str(b)
        file: dict[str, Any] = {section: {key: c}}
        def got(given: Any, env: dict[str, str], data: dict[str, Any] = file, name: str = f.name) -> Any:
            return resolve(cls, Settings(section, data, env), {name: given}, env_prefix=prefix)[name]
        assert got(a, {var: text}) == a, f.name
        assert got(None, {var: text}) == b, f.name
        assert got(None, {}) == c, f.name
        assert got(None, {}, {}) == default, f.name


def _three(kind: Any) -> tuple[Any, Any, Any]:
    """Three distinct values of a setting's type: the flag's, the env var's, the file's."""
    if kind is bool:
        return True, False, True
    if kind is int:
        return 7, 8, 9
    if kind is float:
        return 1.5, 2.5, 3.5
    if kind == list[str]:
        return ["a"], ["b", "c"], ["d"]
    return "flag", "env", "file"


def test_existing_env_var_names_stay() -> None:
    """The names the README and packaging/common/config/*.toml document."""
    names = {
        mode: {env_var(f, flag, prefix) for cls in classes for f, flag in flagged(cls)}
        for mode, (classes, prefix) in MODES.items()
    }
    assert {"OLOL_PORT", "OLLAMA_HOST", "OLLAMA_MODELS", "OLOL_LLAMA_SERVER", "OLOL_TOKEN", "OLOL_TOKEN_FILE",
            "OLOL_DISCOVERY", "OLOL_INTERFACE", "OLOL_CLUSTER", "OLOL_PROXY"} <= names["server"]
    assert {"OLOL_PORT", "OLOL_TOKEN", "OLOL_API_KEYS", "OLOL_DISCOVERY", "OLOL_INTERFACE", "OLOL_CLUSTER",
            "OLLAMA_SERVERS", "OLOL_STATE_DIR", "OLOL_RPC_SERVERS", "OLOL_DISTRIBUTED", "OLLAMA_MODELS",
            "OLOL_LLAMA_SERVER"} <= names["proxy"]
    assert {"OLOL_RPC_PORT", "OLOL_RPC_SERVER", "OLOL_TOKEN", "OLOL_PROXY", "OLOL_DISCOVERY"} <= names["rpc-server"]
    assert {"OLOL_RPC_SERVERS", "OLLAMA_MODELS", "OLOL_LLAMA_SERVER", "OLOL_TOKEN"} <= names["dist"]
    assert {"OLOL_TOKEN", "OLOL_TOKEN_FILE", "OLOL_API_KEY", "OLOL_CA"} <= names["client"]


def test_client_settings_come_from_env_and_a_missing_model_is_an_error() -> None:
    result = runner.invoke(app, ["client", "--prompt", "hi"], env={"OLOL_CLIENT_MODEL": ""})
    assert result.exit_code == 2 and "--model is required" in result.output
