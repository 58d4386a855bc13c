"""The .deb and the .rpm of the real build (dist/olol.dist), built with dpkg-deb and rpmbuild, agree.

Same files, modes, link targets, conffiles, units and scripts (tests/packaging/package_files), and
`olol version` reports one build from every layout: each unpacked package, the standalone folder
and the one-file binary. test_recipes makes the same comparison with a stand-in program on every
test run; this one needs packaging/build-binary's output (packaging/package-test).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.packaging._support import (
    DIST_BINARY,
    DIST_STANDALONE,
    NOT_BUILT,
    PACKAGING,
    clean_env,
    expected_files,
    program_files,
    read_buildinfo,
    run,
)
from tests.packaging.package_files import assert_deb_and_rpm_agree, deb_contents, rpm_contents

pytestmark = pytest.mark.packaging


@pytest.fixture(scope="module")
def built() -> Path:
    if not (DIST_STANDALONE / "olol.bin").is_file() or not DIST_BINARY.is_file():
        pytest.fail(NOT_BUILT)
    return DIST_STANDALONE


def test_deb_and_rpm_of_the_build_agree(built: Path, tmp_path: Path) -> None:
    deb = run([PACKAGING / "build-deb", "--out", tmp_path / "out"], timeout=600).stdout.strip().splitlines()[-1]
    rpm = run([PACKAGING / "build-rpm", "--out", tmp_path / "out"], timeout=900).stdout.strip().splitlines()[-1]
    d, r = deb_contents(Path(deb), tmp_path / "deb"), rpm_contents(Path(rpm), tmp_path / "rpm")
    assert {p for p in r.entries} == expected_files(program=program_files(built))
    assert_deb_and_rpm_agree(d, r)

    # One build, whichever way it is run.
    env = clean_env(XDG_CACHE_HOME=str(tmp_path / "cache"))
    onefile = run([DIST_BINARY, "version"], env=env, timeout=120).stdout.splitlines()[0]
    standalone = run([built / "olol.bin", "version"], env=env, timeout=120).stdout.splitlines()[0]
    assert d.version_output == r.version_output == standalone == onefile
    assert onefile.endswith(f", build {read_buildinfo()['BUILD_ID']})")
