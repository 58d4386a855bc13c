"""`olol version`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import typer


def git_revision() -> str:
    try:
        from olol._build_info import GIT_REVISION  # type: ignore[import-not-found]

        return str(GIT_REVISION)
    except ImportError:
        pass
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


def register(app: typer.Typer) -> None:
    @app.command("version")
    def version() -> None:
        """Print OLOL's version, git revision, protocol version and whether the fast extensions are active."""
        from olol import PROTOCOL_VERSION, __version__

        try:
            from olol._fast import active

            fast = ", ".join(f"{k}={'compiled' if v else 'python'}" for k, v in sorted(active().items()))
        except ImportError:
            fast = "unavailable"
        typer.echo(f"olol {__version__} (git {git_revision()}, protocol {PROTOCOL_VERSION})")
        typer.echo(f"fast extensions: {fast or 'none'}")
