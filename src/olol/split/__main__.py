"""`python -m olol.split ARGS` == `olol dist ARGS` (tests and scripts spawn it this way)."""

from __future__ import annotations

import sys

import typer

from olol.cli import dist as dist_cmd


def main() -> None:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    dist_cmd.register(app)

    @app.callback()
    def _group() -> None:  # keeps `dist` a subcommand rather than the whole app
        pass

    app(args=["dist", *sys.argv[1:]], prog_name="olol")


if __name__ == "__main__":
    main()
