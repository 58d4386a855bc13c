"""The security and discovery flags reach the agent's and the proxy's settings (flag > env > file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from olol.cli import app


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    monkeypatch.setattr("olol.agent.server.run_agent", lambda cfg: seen.setdefault("agent", cfg))
    monkeypatch.setattr("olol.proxy.server.serve", lambda cfg: seen.setdefault("proxy", cfg))
    monkeypatch.setattr("olol.rpc.server.run_rpc_server", lambda cfg: seen.setdefault("rpc", cfg))
    for var in ("OLOL_TOKEN", "OLOL_TOKEN_FILE", "OLOL_API_KEYS", "OLOL_DISCOVERY", "OLOL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    return seen


def test_server_flags(captured: dict[str, Any], tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("file-token-0123456789\n")
    result = CliRunner().invoke(
        app,
        [
            "server",
            "--token-file",
            str(token),
            "--discovery",
            "--interface",
            "lo",
            "--cluster",
            "lab",
            "--proxy",
            "10.0.0.1:8000",
            "--proxy",
            "10.0.0.9:8000",
            "--advertise-host",
            "10.0.0.5",
        ],
    )
    assert result.exit_code == 0, result.output
    cfg = captured["agent"]
    assert cfg.security.token == "file-token-0123456789"
    assert cfg.discovery.enabled and cfg.discovery.mdns and cfg.discovery.interface == "lo"
    assert cfg.discovery.cluster == "lab" and cfg.discovery.advertise_host == "10.0.0.5"
    assert cfg.discovery.proxies == ["10.0.0.1:8000", "10.0.0.9:8000"]


def test_proxy_flags_and_env(captured: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLOL_TOKEN", "env-token-0123456789")
    monkeypatch.setenv("OLOL_API_KEYS", "env-key-0123456789abcdef,monitor-0123456789abcdef:read")
    result = CliRunner().invoke(
        app,
        [
            "proxy",
            "--discovery",
            "--no-mdns",
            "--max-body",
            "1024",
            "--rate-limit",
            "5",
            "--strict-fields",
        ],
    )
    assert result.exit_code == 0, result.output  # no --servers needed with discovery
    cfg = captured["proxy"]
    assert cfg.security.token == "env-token-0123456789"
    assert len(cfg.security.api_keys) == 2
    assert cfg.security.limits.max_body == 1024 and cfg.security.limits.rate == 5.0
    assert cfg.security.limits.reject_unknown_fields  # strict is opt-in: Ollama ignores unknown fields
    assert cfg.discovery.enabled and not cfg.discovery.mdns


def test_rpc_server_discovery_flags(captured: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLOL_PROXY", "10.0.0.1:8000")  # as for agents: the flag wins over the env
    result = CliRunner().invoke(
        app,
        ["rpc-server", "--token", "rpc-token-0123456789", "--discovery", "--interface", "lo", "--cluster", "lab",
         "--advertise-host", "10.0.0.7", "--proxy", "10.0.0.2:8000", "--proxy", "10.0.0.3:8000"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    cfg = captured["rpc"]
    assert cfg.token == "rpc-token-0123456789"
    assert cfg.discovery.enabled and cfg.discovery.interface == "lo" and cfg.discovery.cluster == "lab"
    assert cfg.discovery.advertise_host == "10.0.0.7"
    assert cfg.discovery.proxies == ["10.0.0.2:8000", "10.0.0.3:8000"]
    captured.clear()
    assert CliRunner().invoke(app, ["rpc-server"]).exit_code == 0
    assert not captured["rpc"].discovery.enabled  # no mDNS by default, like agents
    assert captured["rpc"].discovery.proxies == ["10.0.0.1:8000"]  # registration from $OLOL_PROXY alone
    monkeypatch.delenv("OLOL_PROXY")
    captured.clear()
    assert CliRunner().invoke(app, ["rpc-server"]).exit_code == 0
    assert captured["rpc"].discovery.proxies == []


def test_bad_security_flags_fail_clearly(captured: dict[str, Any], tmp_path: Path) -> None:
    runner = CliRunner()
    half = runner.invoke(app, ["server", "--tls-cert", str(tmp_path / "x.crt")])
    assert half.exit_code != 0 and "--tls-key" in half.output
    short = runner.invoke(app, ["proxy", "--servers", "h:1", "--api-key", "short"])
    assert short.exit_code != 0 and "16 characters" in short.output
    assert not captured


def test_secrets_come_from_files_and_env_and_help_says_so(
    captured: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Issue 20: a secret given as a flag shows in `ps`; every one has a file and an environment variable.
    keys = tmp_path / "keys"
    keys.write_text("file-key-0123456789abcdef\nboss-key-0123456789abcdef:admin\n")
    token = tmp_path / "token"
    token.write_text("file-token-0123456789\n")
    monkeypatch.setenv("OLOL_API_KEYS_FILE", str(keys))
    monkeypatch.setenv("OLOL_TOKEN_FILE", str(token))
    result = CliRunner().invoke(app, ["proxy", "--servers", "http://127.0.0.1:1"])
    assert result.exit_code == 0, result.output
    cfg = captured["proxy"]
    assert cfg.security.token == "file-token-0123456789" and len(cfg.security.api_keys) == 2
    help_text = " ".join(CliRunner().invoke(app, ["proxy", "--help"], env={"COLUMNS": "300"}).output.split())
    wanted = ["OLOL_TOKEN]", "OLOL_API_KEYS, comma separated]", "OLOL_API_KEYS_FILE]", "OLOL_TOKEN_FILE]"]
    for words in [*wanted, "shows in `ps`"]:
        assert words in help_text, words
