"""packaging/install.sh in a temporary root: the layout, idempotence, kept config, uninstall and purge.

The program is a stand-in for the standalone build (tests/packaging/_support.fake_standalone);
the same checks of the real build run in test_deb_install (packaging/package-test).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.packaging._support import (
    PACKAGING,
    expected_files,
    fake_binary,
    fake_standalone,
    files_under,
    install,
    run,
    snapshot,
)


@pytest.fixture
def binary(tmp_path: Path) -> Path:
    """The standalone build (what install.sh installs by default)."""
    return fake_standalone(tmp_path)


@pytest.mark.parametrize("prefix", ["/usr", "/usr/local"])
def test_lays_out_exactly_the_expected_files(tmp_path: Path, binary: Path, prefix: str) -> None:
    root = tmp_path / "root"
    install(root, binary, prefix=prefix)
    assert files_under(root) == expected_files(prefix)
    here = root / prefix.lstrip("/")
    assert os.readlink(here / "bin/olol") == "../lib/olol/olol.bin"  # relative: holds in a package root too
    assert (here / "lib/olol/olol.bin").read_bytes() == (binary / "olol.bin").read_bytes()
    assert oct((here / "lib/olol/olol.bin").stat().st_mode & 0o777) == "0o755"
    assert oct((here / "lib/olol/certifi/cacert.pem").stat().st_mode & 0o777) == "0o644"
    # Through the symlink, the program finds the files beside it (as Nuitka's does, by its real path).
    assert run([here / "bin/olol"]).stdout.strip().endswith("(stand-in, build stand-in)")
    unit = (here / "lib/systemd/system/olol-server.service").read_text()
    assert f"ExecStart={prefix}/bin/olol server --config /etc/olol/server.toml" in unit
    assert not re.search(r"@[A-Z]+@", unit)  # every template placeholder rendered
    assert oct((root / "etc/olol").stat().st_mode & 0o777) == "0o750"


def test_second_install_changes_nothing(tmp_path: Path, binary: Path) -> None:
    root = tmp_path / "root"
    install(root, binary)
    first = snapshot(root)
    inode = (root / "usr/lib/olol/olol.bin").stat().st_ino
    install(root, binary)
    assert snapshot(root) == first
    assert (root / "usr/lib/olol/olol.bin").stat().st_ino == inode  # equal program: not even copied again


def test_new_build_replaces_the_program_folder_whole(tmp_path: Path, binary: Path) -> None:
    """Files of the older build do not linger; a running program keeps its open (old) files."""
    root = tmp_path / "root"
    install(root, binary)
    newer = fake_standalone(tmp_path / "newer", "9.9.9", build="newer")
    (newer / "certifi/cacert.pem").unlink()
    (newer / "numpy.libs").mkdir()
    (newer / "numpy.libs/libopenblas.so").write_bytes(b"stand-in")
    with (root / "usr/lib/olol/certifi/cacert.pem").open() as still_open:
        install(root, newer)
        assert still_open.read() == "stand-in data\n"
    program = ("olol.bin", "libpython3.11.so.1.0", "BUILD", "olol/proxy/ui/static/index.html")
    program += ("numpy.libs/libopenblas.so",)
    assert files_under(root) == expected_files(program=program)
    assert run([root / "usr/bin/olol"]).stdout.strip() == "olol 9.9.9 (stand-in, build newer)"
    assert not list(root.glob("usr/lib/olol.olol-*"))


def test_one_file_binary_and_switching_layouts(tmp_path: Path, binary: Path) -> None:
    """--binary installs the one-file executable as PREFIX/bin/olol; either layout replaces the other."""
    root = tmp_path / "root"
    onefile = fake_binary(tmp_path)
    install(root, onefile)
    assert files_under(root) == expected_files(program=None)
    assert (root / "usr/bin/olol").read_bytes() == onefile.read_bytes() and not (root / "usr/bin/olol").is_symlink()
    install(root, binary)
    assert files_under(root) == expected_files()
    install(root, onefile)
    assert files_under(root) == expected_files(program=None) and not (root / "usr/lib/olol").exists()


def test_reinstall_keeps_edited_config_and_updates_the_rest(tmp_path: Path, binary: Path) -> None:
    root = tmp_path / "root"
    install(root, binary)
    conf = root / "etc/olol/proxy.toml"
    conf.write_text('[proxy]\nservers = ["gpu1:50051"]\n')
    newer = tmp_path / "newer"
    newer.mkdir()
    done = install(root, fake_standalone(newer, "9.9.9"))
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
        (["--standalone", "/nonexistent/olol.dist"], "no olol program at /nonexistent/olol.dist/olol.bin"),
        (["--frobnicate"], "unknown option --frobnicate"),
    ],
)
def test_bad_invocations_fail_clearly(tmp_path: Path, binary: Path, args: list[str], message: str) -> None:
    program = [] if {"--binary", "--standalone"} & set(args) else ["--standalone", str(binary)]
    done = run([PACKAGING / "install.sh", *program, "--destdir", tmp_path / "r", *args], check=False)
    assert done.returncode != 0 and message in done.stderr
    assert not (tmp_path / "r" / "usr").exists()


def test_help_documents_every_option() -> None:
    out = run([PACKAGING / "install.sh", "--help"]).stdout
    for option in (
        "--binary",
        "--standalone",
        "--prefix",
        "--sysconfdir",
        "--destdir",
        "--files-only",
        "--enable",
        "--uninstall",
        "--purge",
    ):
        assert option in out
