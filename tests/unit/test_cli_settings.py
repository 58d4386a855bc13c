"""Settings declared once on the config dataclass: the option, its help, and its resolution come from there."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from olol.agent.config import AgentConfig
from olol.cli import app
from olol.cli import proxy as proxy_cmd
from olol.cli.options import env_var, flagged, resolve
from olol.cli.server import ENV_PREFIX
from olol.config import Settings
from olol.proxy.config import ProxyConfig

runner = CliRunner()


@pytest.mark.parametrize(("mode", "config", "prefix"), [
    ("server", AgentConfig, ENV_PREFIX),
    ("proxy", ProxyConfig, proxy_cmd.ENV_PREFIX),
])
def test_help_shows_every_settings_default_and_env_var(mode: str, config: type, prefix: str) -> None:
    out = runner.invoke(app, [mode, "--help"], terminal_width=400, env={"COLUMNS": "400"}).output
    lines = {line.split()[1]: line for line in out.splitlines() if re.match(r"^│ --", line)}
    assert flagged(config), "the config declares its settings"
    for f, flag in flagged(config):
        line = lines[flag.names[0].split("/")[0]]
        assert f"[env var: {env_var(f, flag, prefix)}]" in line, line
        assert "[default: " in line, line


def test_flag_beats_env_beats_file_beats_default() -> None:
    file = {"server": {"ctx_size": 1024, "port": 6000}}
    env = {"OLOL_SERVER_CTX_SIZE": "4096", "OLOL_SERVER_THREADS": "3"}
    s = Settings("server", file, env)
    got = resolve(AgentConfig, s, {"ctx_size": None, "port": None, "grace": 2.5}, env_prefix=ENV_PREFIX)
    assert got["ctx_size"] == 4096 and got["threads"] == 3  # env over file; typed from the field, not the default
    assert got["port"] == 6000 and got["grace"] == 2.5  # file over default; flag over everything
    assert got["host"] == AgentConfig().host  # nothing given: the dataclass's default
    assert AgentConfig(**got).use_async is False
