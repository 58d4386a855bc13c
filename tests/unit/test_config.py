"""flag > env > file > default, for every mode's settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from olol.config import ConfigError, Settings, load_file


def test_precedence(tmp_path: Path) -> None:
    cfg = tmp_path / "olol.toml"
    cfg.write_text('port = 1\nlog_level = "debug"\n[server]\nport = 2\nhost = "10.0.0.1"\n')
    data = load_file(cfg)
    env = {"OLOL_PORT": "3"}
    s = Settings("server", data, env)
    assert s.get("port", 4, 50051, env="OLOL_PORT") == 4  # flag
    assert s.get("port", None, 50051, env="OLOL_PORT") == 3  # env
    assert Settings("server", data, {}).get("port", None, 50051, env="OLOL_PORT") == 2  # mode section
    assert Settings("proxy", data, {}).get("port", None, 8000, env="OLOL_PORT") == 1  # top level
    assert Settings("proxy", {}, {}).get("port", None, 8000, env="OLOL_PORT") == 8000  # default
    assert s.get("host", None, "0.0.0.0") == "10.0.0.1"


def test_env_lists_and_bools() -> None:
    s = Settings("proxy", {}, {"OLLAMA_SERVERS": "a:1, b:2", "X": "yes"})
    assert s.get("servers", None, [], env="OLLAMA_SERVERS") == ["a:1", "b:2"]
    assert s.get("flag", None, False, env="X") is True


def test_bad_values_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="OLOL_PORT"):
        Settings("server", {}, {"OLOL_PORT": "eighty"}).get("port", None, 50051, env="OLOL_PORT")
    with pytest.raises(ConfigError, match="expected int"):
        Settings("server", {"port": "x"}, {}).get("port", None, 50051)
    bad = tmp_path / "bad.toml"
    bad.write_text("port = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_file(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_file(tmp_path / "missing.toml")
