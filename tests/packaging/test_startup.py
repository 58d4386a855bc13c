"""What starting `olol` costs in imports, from the sources (the binary's own checks: test_binary).

Every `olol status`, systemd restart and test of the binary pays the start. `olol version` must not
import typer (nor pydantic, which typer uses to coerce options), and no `--help` may import the
modes' heavy dependencies (grpc, protobuf, aiohttp, numpy): each mode imports them when it runs.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from olol.cli import COMMAND_MODULES, app, command_app
from olol.cli.info import version_lines

HEAVY = ("grpc", "google.protobuf", "aiohttp", "numpy")


def imported(*args: str) -> set[str]:
    """Every module in sys.modules after `olol ARGS` ran (as `python -m olol`, in a fresh interpreter).
    Not -X importtime: it leaves out what importlib.import_module loads (the command modules)."""
    script = (
        "import sys\n"
        "from olol.cli import main\n"
        "try:\n"
        f"    main({list(args)!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(' '.join(sorted(sys.modules)), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    return set(done.stderr.split())


def test_version_imports_no_framework_and_no_mode() -> None:
    modules = imported("version")
    frameworks = ("typer", "pydantic", "rich", "click", *HEAVY)
    loaded = sorted(m for m in modules if any(m == f or m.startswith(f + ".") for f in frameworks))
    assert not loaded, f"`olol version` imported {loaded}"
    assert not any(m.startswith("olol.cli.") and m != "olol.cli.info" for m in modules)


@pytest.mark.parametrize("args", [["--help"], ["server", "--help"], ["proxy", "--help"], ["rpc-server", "--help"],
                                  ["dist", "--help"], ["client", "--help"], ["status", "--help"]])
def test_help_imports_no_heavy_dependency(args: list[str]) -> None:
    modules = imported(*args)
    heavy = sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert not heavy, f"`olol {' '.join(args)}` imported {heavy[:8]}"


def test_a_mode_imports_only_its_command_module() -> None:
    modules = imported("proxy", "--help")
    # proxy's command module (with the helpers it shares: options, common, rpc's as_str); no other mode's.
    others = {f"olol.cli.{module}" for module, _ in COMMAND_MODULES} - {"olol.cli.proxy", "olol.cli.rpc"}
    assert "olol.cli.proxy" in modules and not others & modules, sorted(others & modules)


def test_version_without_typer_prints_what_the_command_prints() -> None:
    fast = subprocess.run(
        [sys.executable, "-m", "olol", "version"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    runner = CliRunner()
    via_typer = runner.invoke(command_app("info"), ["version"])
    via_full_app = runner.invoke(app, ["version"])
    assert via_typer.exit_code == 0 and via_full_app.exit_code == 0
    assert fast == via_typer.output == via_full_app.output == "\n".join(version_lines()) + "\n"
