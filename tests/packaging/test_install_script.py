"""packaging/install.sh in a temporary root: the layout, idempotence, kept config, uninstall and purge."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.packaging._support import (
    PACKAGING,
    expected_files,
    fake_binary,
    files_under,
    install,
    run,
    snapshot,
)


@pytest.fixture
def binary(tmp_path: Path) -> Path:
    return fake_binary(tmp_path)


@pytest.mark.parametrize("prefix", ["/usr", "/usr/local"])
def test_lays_out_exactly_the_expected_files(tmp_path: Path, binary: Path, prefix: str) -> None:
    root = tmp_path / "root"
    install(root, binary, prefix=prefix)
    assert files_under(root) == expected_files(prefix)
    assert (root / prefix.lstrip("/") / "bin/olol").read_bytes() == binary.read_bytes()
    unit = (root / prefix.lstrip("/") / "lib/systemd/system/olol-server.service").read_text()
    assert f"ExecStart={prefix}/bin/olol server --config /etc/olol/server.toml" in unit
    assert not re.search(r"@[A-Z]+@", unit)  # every template placeholder rendered
    assert oct((root / "etc/olol").stat().st_mode & 0o777) == "0o750"


def test_second_install_changes_nothing(tmp_path: Path, binary: Path) -> None:
    root = tmp_path / "root"
    install(root, binary)
    first = snapshot(root)
    install(root, binary)
    assert snapshot(root) == first


def test_reinstall_keeps_edited_config_and_updates_the_rest(tmp_path: Path, binary: Path) -> None:
    root = tmp_path / "root"
    install(root, binary)
    conf = root / "etc/olol/proxy.toml"
    conf.write_text('[proxy]\nservers = ["gpu1:50051"]\n')
    newer = tmp_path / "newer"
    newer.mkdir()
    done = install(root, fake_binary(newer, "9.9.9"))
    assert conf.read_text() == '[proxy]\nservers = ["gpu1:50051"]\n'
    assert "kept your /etc/olol/proxy.toml" in done.stdout
    assert b"9.9.9" in (root / "usr/bin/olol").read_bytes()


def test_uninstall_keeps_config_purge_removes_it_both_idempotent(tmp_path: Path, binary: Path) -> None:
    root = tmp_path / "root"
    install(root, binary)
    for _ in range(2):
        install(root, binary, "--uninstall")
        assert files_under(root) == {f"/etc/olol/{m}.toml" for m in ("proxy", "server", "rpc-server")}
    (root / "var/lib/olol").mkdir(parents=True)
    (root / "var/cache/olol/proxy").mkdir(parents=True)
    for _ in range(2):
        install(root, binary, "--uninstall", "--purge")
        assert files_under(root) == set()
        assert not (root / "etc/olol").exists() and not (root / "var/lib/olol").exists()
        assert not (root / "var/cache/olol").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--purge"], "--purge goes with --uninstall"),
        (["--enable", "proxy,bogus"], "unknown mode 'bogus'"),
        (["--binary", "/nonexistent/olol"], "no olol binary"),
        (["--frobnicate"], "unknown option --frobnicate"),
    ],
)
def test_bad_invocations_fail_clearly(tmp_path: Path, binary: Path, args: list[str], message: str) -> None:
    done = run([PACKAGING / "install.sh", "--binary", binary, "--destdir", tmp_path / "r", *args], check=False)
    assert done.returncode != 0 and message in done.stderr
    assert not (tmp_path / "r" / "usr").exists()


def test_help_documents_every_option() -> None:
    out = run([PACKAGING / "install.sh", "--help"]).stdout
    for option in (
        "--binary",
        "--prefix",
        "--sysconfdir",
        "--destdir",
        "--files-only",
        "--enable",
        "--uninstall",
        "--purge",
    ):
        assert option in out
