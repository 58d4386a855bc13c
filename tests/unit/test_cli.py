"""The one `olol` command: modes, --mode, help, and honest failure of unbuilt modes."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from olol.cli import app, rewrite_mode

runner = CliRunner()


def test_help_lists_every_mode() -> None:
    out = runner.invoke(app, ["--help"]).output
    for mode in ("server", "proxy", "rpc-server", "dist", "client", "version", "--mode"):
        assert mode in out


@pytest.mark.parametrize("mode", ["server", "proxy", "rpc-server", "dist", "client", "version"])
def test_mode_flag_and_subcommand_help_agree(mode: str) -> None:
    a = runner.invoke(app, rewrite_mode(["--mode", mode, "--help"])).output
    b = runner.invoke(app, [mode, "--help"]).output
    assert a == b and "Usage" in a


def test_rewrite_mode_forms() -> None:
    assert rewrite_mode(["--mode=server", "--port", "1"]) == ["server", "--port", "1"]
    assert rewrite_mode(["server", "--mode", "x"]) == ["server", "--mode", "x"]  # after the subcommand: untouched


def test_server_help_has_seed_flags() -> None:
    out = runner.invoke(app, ["server", "--help"], terminal_width=200).output
    for flag in ("--host", "--port", "--ollama-host", "--async", "--backend", "--llama-url", "--model"):
        assert flag in out


def test_version_subprocess_and_entry_point() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "olol", "--mode", "version"], capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith("olol ") and "protocol" in out and "fast extensions" in out


def test_bad_config_file_is_an_error(tmp_path: object) -> None:
    result = runner.invoke(app, ["server", "--config", "/nonexistent/olol.toml"])
    assert result.exit_code == 2
    assert "config file not found" in result.output


def test_proxy_cli_serves_and_stops(tmp_path: object) -> None:
    """`olol proxy` from the command line: READY and the dashboard's URL on stdout, answers, exits 0 on SIGTERM."""
    import json
    import signal
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-m", "olol", "proxy", "--host", "127.0.0.1", "--port", "0",
                             "--servers", "http://127.0.0.1:9", "--log-level", "warning"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("READY "), line
        port = int(line.split(":")[-1])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/version", timeout=10) as resp:
            assert "version" in json.load(resp)
        # The dashboard's URL is printed on start, and serves the page.
        assert proc.stdout.readline().strip() == f"dashboard: http://127.0.0.1:{port}/ui/"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ui/", timeout=10) as resp:
            assert b"OLOL" in resp.read()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_proxy_without_servers_is_an_error() -> None:
    result = runner.invoke(app, ["proxy"], env={"OLLAMA_SERVERS": ""})
    assert result.exit_code == 2 and "no hosts" in result.output
