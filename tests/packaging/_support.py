"""What the packaging tests share: paths, the expected install layout, tree snapshots, unit parsing."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
COMMON = PACKAGING / "common"
DIST_BINARY = ROOT / "dist" / "olol"
DIST_STANDALONE = ROOT / "dist" / "olol.dist"  # the same build unpacked: what the packages install
MODES = ("proxy", "server", "rpc-server")
UNITS = tuple(f"olol-{mode}.service" for mode in MODES)
NOT_BUILT = "binary not built: run packaging/build-binary (or packaging/package-test)"
# What fake_standalone() lays out: the program, a library beside it, data in a subfolder.
# Like Nuitka's, the program is olol.bin: `olol/` beside it is the package (data files, extensions).
FAKE_PROGRAM = ("olol.bin", "libpython3.11.so.1.0", "certifi/cacert.pem", "olol/proxy/ui/static/index.html", "BUILD")


def project_version() -> str:
    text = (ROOT / "src" / "olol" / "__init__.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.M)
    assert match, "no __version__ in src/olol/__init__.py"
    return match.group(1)


def expected_files(
    prefix: str = "/usr", sysconfdir: str = "/etc", program: Iterable[str] | None = FAKE_PROGRAM
) -> set[str]:
    """Every file (and symlink) an OLOL install lays out (packaging/install.sh); each recipe ships exactly these.

    program: the files of the standalone folder, installed under PREFIX/lib/olol with PREFIX/bin/olol a
    symlink to its executable; None: the one-file executable as PREFIX/bin/olol (install.sh --binary).
    """
    files = {f"{prefix}/bin/olol", f"{prefix}/lib/sysusers.d/olol.conf", f"{prefix}/lib/tmpfiles.d/olol.conf"}
    files |= {f"{prefix}/lib/olol/{name}" for name in program or ()}
    files |= {f"{prefix}/lib/systemd/system/{unit}" for unit in UNITS}
    files |= {f"{sysconfdir}/olol/{mode}.toml" for mode in MODES}
    return files


def require(tool: str) -> str:
    """The tool's path. A missing tool fails the test, never skips it: scripts/system-deps.sh (run by
    scripts/test.sh) installs every tool these tests use."""
    path = shutil.which(tool)
    assert path, f"{tool} is not installed: run scripts/system-deps.sh (scripts/test.sh does)"
    return path


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """Run a command; on an unexpected exit status fail with its output, not just the status."""
    done = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
    return done


def fake_binary(directory: Path, version: str | None = None) -> Path:
    """A stand-in for dist/olol where only the layout matters (recipes, install script)."""
    path = directory / "olol"
    path.write_text(f'#!/bin/sh\necho "olol {version or project_version()} (stand-in)"\n')
    path.chmod(0o755)
    return path


def fake_standalone(directory: Path, version: str | None = None, build: str = "stand-in") -> Path:
    """A stand-in for dist/olol.dist (Nuitka's standalone folder): a program that, like the real one,
    finds the files beside it through its own real path, so it runs through the /usr/bin/olol symlink."""
    folder = directory / "olol.dist"
    (folder / "certifi").mkdir(parents=True)
    (folder / "olol/proxy/ui/static").mkdir(parents=True)
    program = folder / "olol.bin"
    program.write_text(
        "#!/bin/sh\n"
        'here="$(dirname "$(readlink -f "$0")")"\n'
        f'echo "olol {version or project_version()} (stand-in, build $(cat "$here/BUILD"))"\n'
    )
    program.chmod(0o755)
    (folder / "libpython3.11.so.1.0").write_bytes(b"\x7fELF stand-in library")
    (folder / "libpython3.11.so.1.0").chmod(0o755)
    (folder / "certifi/cacert.pem").write_text("stand-in data\n")
    (folder / "olol/proxy/ui/static/index.html").write_text("<!doctype html>\n")
    (folder / "BUILD").write_text(f"{build}\n")
    return folder


def program_files(folder: Path) -> set[str]:
    """The files of a standalone folder, relative to it (what expected_files(program=...) takes)."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink()}


def install(destdir: Path, program: Path, *args: str, prefix: str = "/usr") -> subprocess.CompletedProcess[str]:
    """install.sh into destdir: a folder installs as the standalone build, a file as the one-file binary."""
    kind = "--standalone" if program.is_dir() else "--binary"
    return run([PACKAGING / "install.sh", kind, program, "--prefix", prefix, "--destdir", destdir, *args])


def files_under(root: Path) -> set[str]:
    """Regular files and symlinks below root, as absolute paths inside it."""
    return {"/" + p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink()}


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """path -> (mode, sha256 of the content; "" for folders): what two installs must agree on."""
    out: dict[str, tuple[int, str]] = {}
    for path in sorted(root.rglob("*")):
        mode = stat.S_IMODE(path.lstat().st_mode)
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        out["/" + path.relative_to(root).as_posix()] = (mode, digest)
    return out


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit as section -> key -> every value given (keys may repeat; order kept)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path}: {line!r} before any section"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def unit_root_with_systemd(destdir: Path) -> Path:
    """destdir plus the host's own system units, so `systemd-analyze --root` resolves targets."""
    for system_dir in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")):
        if system_dir.is_dir():
            target = destdir / "usr/lib/systemd/system"
            target.mkdir(parents=True, exist_ok=True)
            for unit in system_dir.iterdir():
                dest = target / unit.name
                if not dest.exists() and not dest.is_symlink():
                    if unit.is_symlink():
                        dest.symlink_to(os.readlink(unit))
                    elif unit.is_file():
                        shutil.copy2(unit, dest)
            break
    return destdir


def read_buildinfo(binary: Path = DIST_BINARY) -> dict[str, str]:
    info = binary.with_name(binary.name + ".buildinfo")
    if not info.is_file():
        return {}
    return dict(line.split("=", 1) for line in info.read_text().splitlines() if "=" in line)


def clean_env(**extra: str) -> dict[str, str]:
    """An environment with no Python on PATH: what a copied-over binary meets on a fresh host."""
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
    }
    env.update(extra)
    return env
