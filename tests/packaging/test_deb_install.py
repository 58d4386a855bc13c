"""The .deb of the real build, installed, run and removed in a Debian root made with debootstrap.

It installs the standalone build (dist/olol.dist) under /usr/lib/olol with /usr/bin/olol a symlink:
nothing unpacks itself at start, so the units' cache folders stay empty.

The root (bookworm, minbase + systemd) is made once and kept as a tarball under
build/packaging/debootstrap/; each test unpacks a fresh copy. Needs root, chroot
and debootstrap (and, the first time, the Debian mirror).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.packaging._support import (
    DIST_BINARY,
    DIST_STANDALONE,
    NOT_BUILT,
    PACKAGING,
    ROOT,
    UNITS,
    expected_files,
    program_files,
    project_version,
    run,
)

pytestmark = [
    pytest.mark.packaging,
    pytest.mark.skipif(os.geteuid() != 0, reason="chroot needs root"),
    pytest.mark.skipif(shutil.which("debootstrap") is None, reason="debootstrap is not installed"),
]

BASE = ROOT / "build/packaging/debootstrap/bookworm-minbase.tar"
MIRROR = os.environ.get("OLOL_DEBIAN_MIRROR", "http://deb.debian.org/debian")


def make_base() -> Path:
    """debootstrap once (a few minutes), then reuse the tarball."""
    if BASE.is_file():
        return BASE
    BASE.parent.mkdir(parents=True, exist_ok=True)
    target = BASE.parent / "rootfs"
    shutil.rmtree(target, ignore_errors=True)
    run(["debootstrap", "--variant=minbase", "--include=systemd,passwd", "bookworm", target, MIRROR], timeout=1800)
    part = BASE.with_suffix(".part")
    run(["tar", "-C", target, "-cf", part, "."], timeout=600)
    part.rename(BASE)
    shutil.rmtree(target)
    return BASE


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (DIST_STANDALONE / "olol.bin").is_file():
        pytest.fail(NOT_BUILT)
    out = run([PACKAGING / "build-deb", "--out", tmp_path_factory.mktemp("deb")], timeout=600).stdout
    return Path(out.strip().splitlines()[-1])


@pytest.fixture
def chroot(tmp_path: Path) -> Iterator[Path]:
    """A fresh Debian root with /proc mounted (the one-file binary finds itself through it)."""
    root = tmp_path / "root"
    root.mkdir()
    with tarfile.open(make_base()) as tar:
        tar.extractall(root, filter="fully_trusted")
    run(["mount", "-t", "proc", "proc", root / "proc"])
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root / "proc")], check=False)


def paths_outside_proc(root: Path) -> set[Path]:
    """Every path under root but the mounted /proc, which is never entered (its entries vanish as
    processes exit: walking it and filtering afterwards failed on busy hosts)."""
    out: set[Path] = set()
    for folder, dirs, files in os.walk(root):
        if Path(folder) == root:
            dirs[:] = [d for d in dirs if d != "proc"]
        out.update(Path(folder) / name for name in (*dirs, *files))
    return out


def inside(root: Path, *cmd: str, check: bool = True, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
    return run(["chroot", root, *cmd], check=check, env=env, timeout=timeout)


def test_deb_installs_runs_and_uninstalls_cleanly(chroot: Path, deb: Path) -> None:
    shutil.copy(deb, chroot / "tmp/olol.deb")
    before = paths_outside_proc(chroot)
    inside(chroot, "dpkg", "-i", "/tmp/olol.deb")

    # Installed: the layout, the user, the locked-down config folder.
    listed = set(inside(chroot, "dpkg", "-L", "olol").stdout.split())
    assert expected_files(program=program_files(DIST_STANDALONE)) <= listed
    assert os.readlink(chroot / "usr/bin/olol") == "../lib/olol/olol.bin"
    assert inside(chroot, "getent", "passwd", "olol").stdout.split(":")[5:7] == ["/var/lib/olol", "/usr/sbin/nologin\n"]
    assert inside(chroot, "stat", "-c", "%a %U %G", "/etc/olol").stdout.split() == ["750", "root", "olol"]
    version = inside(chroot, "env", "XDG_CACHE_HOME=/tmp/cache", "olol", "version", timeout=120).stdout
    assert version.startswith(f"olol {project_version()} ")
    # As the unit runs it: the olol user, its own cache folder.
    inside(chroot, "install", "-d", "-o", "olol", "-g", "olol", "/var/cache/olol/server")
    as_user = inside(
        chroot,
        "setpriv",
        "--reuid=olol",
        "--regid=olol",
        "--init-groups",
        "env",
        "XDG_CACHE_HOME=/var/cache/olol/server",
        "HOME=/var/lib/olol",
        "olol",
        "server",
        "--help",
    )
    assert "Usage: olol server" in as_user.stdout
    # The installed program ran unpacked: nothing went into the unit's cache folder.
    assert not any((chroot / "var/cache/olol/server").iterdir())
    direct = run([DIST_BINARY, "version"], env={"PATH": "/usr/bin:/bin", "HOME": str(chroot / "tmp")}).stdout
    assert version == direct, "the .deb's program is another build than dist/olol"
    verify = inside(chroot, "systemd-analyze", "verify", *(f"/usr/lib/systemd/system/{u}" for u in UNITS), check=False)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr

    # Reinstall (an upgrade to the same version) keeps an edited config.
    (chroot / "etc/olol/proxy.toml").write_text('[proxy]\nservers = ["gpu1:50051"]\n')
    inside(chroot, "dpkg", "-i", "/tmp/olol.deb")
    assert "gpu1:50051" in (chroot / "etc/olol/proxy.toml").read_text()

    # Remove: binary and units go, config stays (conffiles).
    inside(chroot, "dpkg", "-r", "olol")
    assert not (chroot / "usr/bin/olol").exists() and not (chroot / "usr/bin/olol").is_symlink()
    assert not (chroot / "usr/lib/olol").exists()
    assert not any((chroot / "usr/lib/systemd/system" / u).exists() for u in UNITS)
    assert (chroot / "etc/olol/proxy.toml").exists()
    assert "deinstall ok config-files" in inside(chroot, "dpkg-query", "-W", "-f=${Status}", "olol").stdout

    # Purge: nothing of OLOL's is left but the system user (Debian's convention).
    inside(chroot, "dpkg", "-P", "olol")
    assert inside(chroot, "dpkg-query", "-W", "olol", check=False).returncode != 0
    after = paths_outside_proc(chroot)
    left = sorted(
        str(p.relative_to(chroot)) for p in after - before if "olol" in str(p) and not p.is_relative_to(chroot / "tmp")
    )
    assert left == [], f"left behind by purge: {left}"
    assert inside(chroot, "dpkg-statoverride", "--list", "/etc/olol", check=False).returncode != 0


def test_install_script_on_a_fresh_host(chroot: Path) -> None:
    """packaging/install.sh for real (user, ownership), idempotent, and --uninstall --purge undoes it."""
    if not (DIST_STANDALONE / "olol.bin").is_file():
        pytest.fail(NOT_BUILT)
    shutil.copytree(PACKAGING, chroot / "tmp/packaging")
    shutil.copytree(DIST_STANDALONE, chroot / "tmp/olol.dist", symlinks=True)
    for _ in range(2):
        done = inside(chroot, "bash", "/tmp/packaging/install.sh", "--standalone", "/tmp/olol.dist")
        assert "installed olol " in done.stdout
    assert os.readlink(chroot / "usr/local/bin/olol") == "../lib/olol/olol.bin"
    assert inside(chroot, "getent", "passwd", "olol").returncode == 0
    assert inside(chroot, "stat", "-c", "%a %U %G", "/etc/olol/server.toml").stdout.split() == ["640", "root", "olol"]
    installed = inside(chroot, "/usr/local/bin/olol", "version", timeout=120).stdout
    direct = run([DIST_BINARY, "version"], env={"PATH": "/usr/bin:/bin", "HOME": str(chroot / "tmp")}).stdout
    assert installed.startswith("olol ") and installed == direct, "install.sh's program is another build than dist/olol"
    inside(chroot, "bash", "/tmp/packaging/install.sh", "--uninstall", "--purge")
    assert not (chroot / "usr/local/bin/olol").exists() and not (chroot / "etc/olol").exists()
    assert not (chroot / "usr/local/lib/olol").exists()
    assert inside(chroot, "getent", "passwd", "olol", check=False).returncode != 0
