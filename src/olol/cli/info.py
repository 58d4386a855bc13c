"""`olol version`.

Imports inside functions are start-up cost kept off the other commands (see `olol.cli`).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer


def build_info() -> tuple[str | None, str | None]:
    """(git revision, build id) written into a built executable by packaging/build-binary; None elsewhere."""
    try:
        from olol import _build_info  # type: ignore[attr-defined]
    except ImportError:
        return None, None
    return str(_build_info.GIT_REVISION), str(_build_info.BUILD_ID)


def git_revision() -> str:
    revision, _ = build_info()
    if revision is not None:
        return revision
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=2,
            check=True,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def version_lines() -> list[str]:
    """OLOL's version, git revision, protocol version (and build id of a built executable: every layout
    of one build, one-file or unpacked, reports the same), and whether the fast extensions are active."""
    from olol import PROTOCOL_VERSION, __version__

    try:
        from olol._fast import active

        fast = ", ".join(f"{k}={'compiled' if v else 'python'}" for k, v in sorted(active().items()))
    except ImportError:
        fast = "unavailable"
    _, build_id = build_info()
    build = f", build {build_id}" if build_id else ""
    return [
        f"olol {__version__} (git {git_revision()}, protocol {PROTOCOL_VERSION}{build})",
        f"fast extensions: {fast or 'none'}",
    ]


def print_version() -> None:
    print("\n".join(version_lines()), flush=True)


def register(app: typer.Typer) -> None:
    @app.command("version")
    def version() -> None:
        """Print OLOL's version, git revision, protocol version and whether the fast extensions are active."""
        print_version()
