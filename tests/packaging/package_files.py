"""What a built .deb or .rpm holds, in one shape, so the two can be compared entry by entry.

Each package is read with its own tools (dpkg-deb; rpm, rpm2cpio and cpio), unpacked into a
folder of its own, and its `usr/bin/olol version` run from there: the installed layout,
symlink included, without installing anything on this host.
"""

from __future__ import annotations

import hashlib
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from tests.packaging._support import MODES, UNITS, clean_env, require, run

CONFFILES = {f"/etc/olol/{mode}.toml" for mode in MODES}

# rpm -qp --scripts headers -> the scriptlet's name in the spec.
RPM_SCRIPTLETS = {
    "preinstall": "pre",
    "postinstall": "post",
    "preuninstall": "preun",
    "postuninstall": "postun",
}


@dataclass(frozen=True)
class Entry:
    """A file (mode and content digest) or a symlink (its target) as the package ships it."""

    mode: int
    digest: str = ""
    target: str = ""


@dataclass(frozen=True)
class PackageContents:
    entries: dict[str, Entry]  # absolute path -> entry, files and symlinks only
    conffiles: set[str]
    scripts: dict[str, str]  # maintainer script / scriptlet name -> text
    version_output: str  # `olol version` of the unpacked package, first line


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _entries(root: Path, modes: dict[str, int], targets: dict[str, str]) -> dict[str, Entry]:
    out: dict[str, Entry] = {}
    for path, mode in modes.items():
        if stat.S_ISLNK(mode):
            out[path] = Entry(mode=0o777, target=targets[path])
        elif stat.S_ISREG(mode):
            out[path] = Entry(mode=stat.S_IMODE(mode), digest=_digest(root / path.lstrip("/")))
    return out


def _version(root: Path) -> str:
    done = run([root / "usr/bin/olol", "version"], env=clean_env(XDG_CACHE_HOME=str(root / "cache")), timeout=120)
    return done.stdout.splitlines()[0]


def _mode_from_listing(text: str) -> int:
    """'-rwxr-xr-x' / 'lrwxrwxrwx' (tar's listing) -> st_mode."""
    kinds = {"-": stat.S_IFREG, "l": stat.S_IFLNK, "d": stat.S_IFDIR}
    mode = kinds.get(text[0], 0)
    for i, bit in enumerate((0o400, 0o200, 0o100, 0o40, 0o20, 0o10, 0o4, 0o2, 0o1)):
        if text[1 + i] != "-":
            mode |= bit
    return mode


def deb_contents(deb: Path, work: Path) -> PackageContents:
    require("dpkg-deb")
    root, control = work / "root", work / "control"
    root.mkdir(parents=True)
    run(["dpkg-deb", "--extract", deb, root])
    run(["dpkg-deb", "--control", deb, control])
    modes: dict[str, int] = {}
    targets: dict[str, str] = {}
    for line in run(["dpkg-deb", "--contents", deb]).stdout.splitlines():
        # -rwxr-xr-x root/root 1234 2026-12-07 04:00 ./usr/lib/olol/olol[ -> target]
        match = re.match(r"^(\S{10}) \S+\s+\d+ \S+ \S+ \.(/\S*?)/?(?: -> (\S+))?$", line)
        assert match, f"unexpected dpkg-deb --contents line: {line!r}"
        modes[match.group(2)] = _mode_from_listing(match.group(1))
        if match.group(3):
            targets[match.group(2)] = match.group(3)
    scripts = {name: (control / name).read_text() for name in ("preinst", "postinst", "prerm", "postrm")
               if (control / name).is_file()}
    conffiles = set((control / "conffiles").read_text().split()) if (control / "conffiles").is_file() else set()
    return PackageContents(_entries(root, modes, targets), conffiles, scripts, _version(root))


def rpm_contents(rpm: Path, work: Path) -> PackageContents:
    for tool in ("rpm", "rpm2cpio", "cpio"):
        require(tool)
    root = work / "root"
    root.mkdir(parents=True)
    run(["sh", "-c", f"rpm2cpio '{rpm}' | cpio -idm --quiet --no-absolute-filenames"], cwd=root)
    modes: dict[str, int] = {}
    targets: dict[str, str] = {}
    for line in run(["rpm", "-qp", "--dump", rpm]).stdout.splitlines():
        # path size mtime digest mode owner group isconfig isdoc rdev symlink
        fields = line.split()
        modes[fields[0]] = int(fields[4], 8)
        if stat.S_ISLNK(int(fields[4], 8)):
            targets[fields[0]] = fields[10]
    scripts: dict[str, str] = {}
    name = ""
    for line in run(["rpm", "-qp", "--scripts", rpm]).stdout.splitlines():
        header = re.match(r"^(\w+) scriptlet \(using \S+\):$", line)
        if header:
            name = RPM_SCRIPTLETS.get(header.group(1), header.group(1))
            scripts[name] = ""
        elif name:
            scripts[name] += line + "\n"
    conffiles = set(run(["rpm", "-qp", "--configfiles", rpm]).stdout.split())
    return PackageContents(_entries(root, modes, targets), conffiles, scripts, _version(root))


def assert_deb_and_rpm_agree(d: PackageContents, r: PackageContents) -> None:
    """Same files (modes, contents, link targets), same conffiles, scripts that do the same things,
    and the same `olol version` from both unpacked packages."""
    only_deb = {"/usr/share/doc/olol/copyright"}  # Debian's place for the license
    deb_entries = {p: e for p, e in d.entries.items() if p not in only_deb}
    # One known difference: the configs are 0640 root:olol in the RPM (%attr), 0644 in the .deb, where
    # the folder alone keeps them private (0750 root:olol, set by postinst's dpkg-statoverride).
    for conf in CONFFILES:
        assert (deb_entries[conf].mode, r.entries[conf].mode) == (0o644, 0o640)
        deb_entries[conf] = r.entries[conf]
    assert deb_entries == r.entries
    assert d.conffiles == r.conffiles == CONFFILES
    for unit in UNITS:
        assert unit in d.scripts["prerm"] and unit in r.scripts["preun"]  # removal stops and disables
        assert unit in d.scripts["postinst"] and unit in r.scripts["postun"]  # upgrades restart running units
    assert "systemd-sysusers" in d.scripts["postinst"] and "useradd" in r.scripts["pre"]  # the olol user
    assert d.version_output == r.version_output
