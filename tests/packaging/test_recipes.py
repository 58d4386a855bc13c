"""The recipes: .deb, RPM spec, Arch PKGBUILD, Homebrew formula, scripts.

Each recipe must ship exactly the install layout (`expected_files`: the standalone build
under /usr/lib/olol, /usr/bin/olol a symlink to it), agree with the project's version and
with the others on names and URLs, and be valid in its own language, checked by the tool
itself (shellcheck, rpmspec, rpmbuild, ruby: scripts/system-deps.sh installs them; a missing
one fails, never skips). The program here is a stand-in (`fake_standalone`); the same
comparisons of the real build run in test_packages (packaging/package-test).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.packaging._support import (
    MODES,
    PACKAGING,
    ROOT,
    UNITS,
    expected_files,
    fake_standalone,
    files_under,
    project_version,
    require,
    run,
)
from tests.packaging.package_files import assert_deb_and_rpm_agree, deb_contents, rpm_contents

HOMEPAGE = "https://github.com/K2/olol"
SCRIPTS = ("build-binary", "build-deb", "build-rpm", "install.sh", "package-test")
MAINTAINER_SCRIPTS = ("debian/postinst", "debian/prerm", "debian/postrm")
FORMULA = PACKAGING / "homebrew/olol.rb"
PKGBUILD = PACKAGING / "arch/PKGBUILD"
SPEC = PACKAGING / "rpm/olol.spec"
CONFFILES = {f"/etc/olol/{mode}.toml" for mode in MODES}


# --- scripts -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_are_strict_bash(name: str) -> None:
    path = PACKAGING / name
    text = path.read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and "\nset -euo pipefail\n" in text
    assert path.stat().st_mode & 0o111, f"{name} is not executable"
    run(["bash", "-n", path])


@pytest.mark.parametrize("name", MAINTAINER_SCRIPTS)
def test_maintainer_scripts_are_posix_sh(name: str) -> None:
    path = PACKAGING / name
    assert path.read_text().startswith("#!/bin/sh\n") and "\nset -e\n" in path.read_text()
    run(["sh", "-n", path])


def test_shellcheck_clean() -> None:
    require("shellcheck")
    files = [PACKAGING / n for n in (*SCRIPTS, *MAINTAINER_SCRIPTS)]
    run(["shellcheck", "--shell=bash", PKGBUILD, "--exclude=SC2034,SC2154"])  # PKGBUILD: makepkg reads the vars
    run(["shellcheck", *files])


# --- .deb ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require("dpkg-deb")
    work = tmp_path_factory.mktemp("deb")
    out = run([PACKAGING / "build-deb", "--standalone", fake_standalone(work), "--out", work / "out"]).stdout
    return Path(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def rpm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require("rpmbuild")
    work = tmp_path_factory.mktemp("rpm")
    out = run([PACKAGING / "build-rpm", "--standalone", fake_standalone(work), "--out", work / "out"]).stdout
    return Path(out.strip().splitlines()[-1])


def test_deb_ships_the_install_layout(deb: Path, tmp_path: Path) -> None:
    run(["dpkg-deb", "--extract", deb, tmp_path])
    assert files_under(tmp_path) == expected_files() | {"/usr/share/doc/olol/copyright"}
    assert os.readlink(tmp_path / "usr/bin/olol") == "../lib/olol/olol.bin"
    listing = run(["dpkg-deb", "--contents", deb]).stdout
    assert re.search(r"^lrwxrwxrwx root/root .* \./usr/bin/olol -> \.\./lib/olol/olol\.bin$", listing, re.M)
    assert re.search(r"^-rwxr-xr-x root/root .* \./usr/lib/olol/olol\.bin$", listing, re.M)
    assert re.search(r"^-rw-r--r-- root/root .* \./usr/lib/olol/certifi/cacert.pem$", listing, re.M)
    assert re.search(r"^drwxr-x--- root/root .* \./etc/olol/$", listing, re.M)


def test_deb_control_conffiles_and_scripts(deb: Path, tmp_path: Path) -> None:
    run(["dpkg-deb", "--control", deb, tmp_path])
    control = dict(
        line.split(": ", 1) for line in (tmp_path / "control").read_text().splitlines() if re.match(r"^\S+: ", line)
    )
    assert control["Package"] == "olol"
    assert control["Version"] == f"{project_version()}-1"
    assert control["Homepage"] == HOMEPAGE
    assert re.fullmatch(r"libc6 \(>= [0-9.]+\), passwd", control["Depends"])
    assert int(control["Installed-Size"]) > 0
    assert set((tmp_path / "conffiles").read_text().split()) == CONFFILES
    for script in ("postinst", "prerm", "postrm"):
        assert (tmp_path / script).stat().st_mode & 0o111
        assert "@" not in (tmp_path / script).read_text().replace("$@", "")
    postinst = (tmp_path / "postinst").read_text()
    assert "systemd-sysusers /usr/lib/sysusers.d/olol.conf" in postinst and "useradd --system" in postinst
    assert "dpkg-statoverride --update --add root olol 0750 /etc/olol" in postinst
    assert "systemctl enable" not in postinst and "systemctl start" not in postinst  # the admin picks the modes
    for unit in UNITS:
        assert unit in (tmp_path / "prerm").read_text()
    md5 = {line.split()[1] for line in (tmp_path / "md5sums").read_text().splitlines()}
    files = expected_files() - CONFFILES - {"/usr/bin/olol"}  # dpkg sums files, not the symlink
    assert md5 == {p.lstrip("/") for p in files} | {"usr/share/doc/olol/copyright"}


# --- RPM -----------------------------------------------------------------------------------


def spec_tag(name: str) -> str:
    match = re.search(rf"^{name}:\s+(.+)$", SPEC.read_text(), re.M)
    assert match, f"olol.spec has no {name}:"
    return match.group(1).strip()


def test_spec_fields() -> None:
    assert spec_tag("Name") == "olol"
    assert spec_tag("Version") == project_version()
    assert spec_tag("License") == "MIT"
    assert spec_tag("URL") == HOMEPAGE
    text = SPEC.read_text()
    for section in ("%description", "%prep", "%install", "%pre", "%post", "%preun", "%postun", "%files", "%changelog"):
        assert re.search(rf"^{section}\b", text, re.M), f"olol.spec lacks {section}"
    assert "%global __strip /bin/true" in text  # the program comes compiled, its libraries as built
    # Its bundled libraries are private: no Provides/Requires generated from them.
    assert "%global __provides_exclude_from ^%{_prefix}/lib/olol/.*$" in text
    assert "%global __requires_exclude_from ^%{_prefix}/lib/olol/.*$" in text
    assert "packaging/install.sh --standalone" in text  # the one definition of the layout


def test_spec_parses_with_rpm() -> None:
    require("rpmspec")
    done = run(["rpmspec", "-q", "--qf", "%{name} %{version}\n", "--load", PACKAGING / "rpm/fallback.macros", SPEC])
    assert done.stdout.split() == ["olol", project_version()]
    expanded = run(["rpmspec", "-P", "--load", PACKAGING / "rpm/fallback.macros", SPEC]).stdout
    version = project_version()
    assert f"packaging/install.sh --standalone ../olol-{version}-linux-" in expanded
    source0 = rf"^Source0:\s+\S+/releases/download/v{version}/olol-{version}-linux-\w+\.tar\.gz$"
    assert re.search(source0, expanded, re.M)


def test_rpm_ships_the_install_layout(rpm: Path) -> None:
    dump = run(["rpm", "-qp", "--dump", rpm]).stdout.splitlines()
    entries = {fields[0]: fields for fields in (line.split() for line in dump)}
    files = {path for path, fields in entries.items() if fields[4].startswith(("010", "012"))}
    assert files == expected_files()
    assert entries["/usr/bin/olol"][4] == "0120777" and entries["/usr/bin/olol"][-1] == "../lib/olol/olol.bin"
    assert entries["/usr/lib/olol/olol.bin"][4] == "0100755"
    assert entries["/etc/olol"][4:7] == ["040750", "root", "olol"]
    # The program's own libraries provide and require nothing of the system's.
    provides = run(["rpm", "-qp", "--provides", rpm]).stdout
    assert "libpython" not in provides and ".so" not in run(["rpm", "-qp", "--requires", rpm]).stdout
    configs = run(["rpm", "-qp", "--configfiles", rpm]).stdout.split()
    assert set(configs) == CONFFILES
    scripts = run(["rpm", "-qp", "--scripts", rpm]).stdout
    assert "useradd -r -g olol" in scripts and "systemctl" in scripts


def test_deb_and_rpm_agree(deb: Path, rpm: Path, tmp_path: Path) -> None:
    """The same files with the same modes, contents and link targets; the same units; scripts that do
    the same things; and `olol version` from each unpacked package reports the same build."""
    d, r = deb_contents(deb, tmp_path / "deb"), rpm_contents(rpm, tmp_path / "rpm")
    assert_deb_and_rpm_agree(d, r)
    assert d.version_output == f"olol {project_version()} (stand-in, build stand-in)"


# --- Arch ----------------------------------------------------------------------------------


def pkgbuild_vars() -> dict[str, list[str]]:
    """The PKGBUILD's variables and arrays, as bash (and so makepkg) sees them."""
    names = [
        "pkgname",
        "pkgver",
        "pkgrel",
        "arch",
        "url",
        "license",
        "depends",
        "backup",
        "options",
        "source",
        "source_x86_64",
        "sha256sums",
        "sha256sums_x86_64",
    ]
    script = f"set -e; source {PKGBUILD}; " + "".join(
        f'printf "%s\\0" {n} "${{#{n}[@]}}" "${{{n}[@]}}"; ' for n in names
    )
    fields = run(["bash", "-c", script]).stdout.split("\0")
    out: dict[str, list[str]] = {}
    while len(fields) > 1:
        name, count = fields[0], int(fields[1])
        out[name] = fields[2 : 2 + count]
        fields = fields[2 + count :]
    return out


def test_pkgbuild_fields() -> None:
    v = pkgbuild_vars()
    assert v["pkgname"] == ["olol"] and v["pkgver"] == [project_version()]
    assert v["url"] == [HOMEPAGE] and v["license"] == ["MIT"]
    assert "x86_64" in v["arch"]
    assert {"/" + b for b in v["backup"]} == CONFFILES
    assert {"!strip", "!debug"} <= set(v["options"])
    assert len(v["source"]) == len(v["sha256sums"]) and len(v["source_x86_64"]) == len(v["sha256sums_x86_64"])
    version = project_version()
    assert v["source_x86_64"][0].endswith(f"/releases/download/v{version}/olol-{version}-linux-x86_64.tar.gz")


def test_pkgbuild_package_ships_the_install_layout(tmp_path: Path) -> None:
    """Run the PKGBUILD's package() as makepkg would, over this checkout as the source tarball
    and the program's release tarball extracted beside it."""
    version = project_version()
    srcdir, pkgdir = tmp_path / "src", tmp_path / "pkg"
    srcdir.mkdir()
    (srcdir / f"olol-{version}").symlink_to(ROOT)
    fake_standalone(tmp_path).rename(srcdir / f"olol-{version}-linux-x86_64")
    run(
        [
            "bash",
            "-c",
            f'set -eu; source {PKGBUILD}; srcdir={srcdir}; pkgdir={pkgdir}; CARCH=x86_64; cd "$srcdir"; package',
        ]
    )
    assert files_under(pkgdir) == expected_files() | {"/usr/share/licenses/olol/LICENSE"}
    assert run([pkgdir / "usr/bin/olol"]).stdout.strip() == f"olol {version} (stand-in, build stand-in)"


# --- Homebrew ------------------------------------------------------------------------------


def test_formula_is_valid_ruby() -> None:
    require("ruby")
    assert run(["ruby", "-c", FORMULA]).stdout.strip() == "Syntax OK"


def test_formula_fields() -> None:
    text = FORMULA.read_text()
    assert re.search(r"^class Olol < Formula$", text, re.M)
    assert f'homepage "{HOMEPAGE}"' in text
    assert f'url "{HOMEPAGE}.git", tag: "v{project_version()}"' in text
    assert 'license "MIT"' in text and re.search(r'^  desc "[A-Z].{10,78}[^.]"$', text, re.M)
    assert 'depends_on "python@3.11"' in text  # pyproject: requires-python >= 3.11
    assert '(etc/"olol").install Dir["packaging/common/config/*.toml"]' in text
    assert all((PACKAGING / "common/config" / f"{m}.toml").is_file() for m in MODES)
    assert 'run [opt_bin/"olol", "server", "--config", etc/"olol/server.toml"]' in text
    assert 'assert_match "olol #{version}", shell_output("#{bin}/olol version")' in text
    # balanced blocks: every do/def/class closes (a cheap stand-in for ruby -c)
    opens = len(re.findall(r"^\s*(class|def)\b|\bdo$|<<~EOS$", text, re.M))
    closes = len(re.findall(r"^\s*(end|EOS)$", text, re.M))
    assert opens == closes


# --- all of them ---------------------------------------------------------------------------


def test_recipes_agree_on_summary_and_homepage() -> None:
    summary = "One LLM cluster out of many Ollama / llama.cpp hosts"
    assert spec_tag("Summary") == summary
    assert pkgbuild_vars()["pkgname"] == ["olol"]
    assert f'pkgdesc="{summary}"' in PKGBUILD.read_text()
    assert f'desc "{summary}"' in FORMULA.read_text()
    control = (PACKAGING / "debian/control.in").read_text()
    assert f"Description: {summary[0].lower()}{summary[1:]}" in control and f"Homepage: {HOMEPAGE}" in control
    for unit in (PACKAGING / "common/systemd").iterdir():
        assert f"Documentation={HOMEPAGE}" in unit.read_text()


def test_build_binary_options() -> None:
    """The build command includes what the modes import lazily or by name, and caches the unpacked payload."""
    text = (PACKAGING / "build-binary").read_text()
    for option in (
        "--mode=onefile",
        "--onefile-as-archive",  # a warm start skips decompressing what is unpacked already
        "--include-package=olol",
        "--include-package=olol._proto",
        "--include-module=grpc",
        "--include-module=aiohttp",
        "--include-module=numpy",
        "--include-module=gguf",
        "--include-module=olol._fast.$name",
    ):
        assert option in text
    for tool in ("mypy", "grpc_tools", "olol._proto_build", "numpy.distutils", "numpy.f2py"):
        assert f"--nofollow-import-to={tool} " in text  # build/type-checking tools stay out of the binary
    # What Nuitka's package configs add but no mode imports (packaging/import_census.py)
    unused_modules = ("numpy.fft", "numpy.polynomial", "numpy.ma", "requests", "urllib3", "tqdm")
    unused_modules += ("pydantic", "pydantic_core")
    for unused in unused_modules:
        assert f"--nofollow-import-to={unused} " in text
    assert "--nofollow-import-to='pygments.lexers.[!_]*'" in text
    assert "--nofollow-import-to=numpy.random" not in text  # the demo's tiny model uses it
    assert "--no-deployment-flag=excluded-module-usage" in text  # yarl finds pydantic_core absent, not refused
    # Extension modules are stripped in the build venv (not auditwheel's *.libs), then imported.
    assert "xargs -0 -r strip --strip-unneeded" in text and "! -path '*.libs/*'" in text
    # ... in a venv of its own: what the interpreter has installed elsewhere never goes in unstripped.
    assert '"$PY" -m venv "$VENV"' in text and "--system-site-packages" not in text.split("# --- tools")[1]
    assert '--onefile-tempdir-spec="{CACHE_DIR}/olol/$VERSION-$BUILD_ID"' in text
    # The standalone folder the one file was packed from is kept: the packages install it.
    assert 'mv "$WORK/nuitka/olol_main.dist" "$OUT/.olol.dist.tmp"' in text
    assert "olol.dist.tmp/olol\"" not in text  # the program keeps its name: olol/ beside it is the package
    assert re.search(r'nice -n "\$\{OLOL_NICE:-19\}" "\$VENV/bin/python" -m nuitka', text)


def test_build_id_tracks_the_sources(tmp_path: Path) -> None:
    """A source edit gives a new id (a new unpack folder); caches and compiled files do not."""
    for part in ("src/olol", "protos"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    for part in ("setup.py", "pyproject.toml", "packaging/build-binary"):
        (tmp_path / part).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / part, tmp_path / part)
    script = tmp_path / "packaging/build-binary"

    def build_id() -> str:
        return run([script, "--build-id"]).stdout.strip()

    first = build_id()
    assert re.fullmatch(r"[0-9a-f]{12}", first)
    (tmp_path / "src/olol/__pycache__").mkdir(exist_ok=True)
    (tmp_path / "src/olol/__pycache__/x.cpython-311.pyc").write_bytes(b"cache")
    (tmp_path / "src/olol/_fast/quant_c.cpython-311-x86_64-linux-gnu.so").write_bytes(b"built")
    assert build_id() == first
    (tmp_path / "src/olol/config.py").write_text((tmp_path / "src/olol/config.py").read_text() + "\n# edit\n")
    assert build_id() != first
