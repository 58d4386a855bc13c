"""`python -m olol.rpc ARGS` == `olol rpc-server ARGS` (tests and scripts spawn it this way)."""

from __future__ import annotations

import sys

import typer

from olol.cli import rpc as rpc_cmd


def main() -> None:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    rpc_cmd.register(app)

    @app.callback()
    def _group() -> None:  # keeps `rpc-server` a subcommand rather than the whole app
        pass

    app(args=["rpc-server", *sys.argv[1:]], prog_name="olol")


if __name__ == "__main__":
    main()
