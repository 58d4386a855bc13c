"""`olol`: one command, every mode (`olol server` == `olol --mode server`).

Modes import their heavy dependencies (grpc, aiohttp, numpy) only when they run,
so `olol --help` and `olol version` start fast, also from the one-file binary.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

from olol.cli import certs as certs_cmd
from olol.cli import client as client_cmd
from olol.cli import demo as demo_cmd
from olol.cli import dist as dist_cmd
from olol.cli import info as info_cmd
from olol.cli import models as models_cmd
from olol.cli import proxy as proxy_cmd
from olol.cli import rpc as rpc_cmd
from olol.cli import server as server_cmd
from olol.cli import status as status_cmd

MODES = ("server", "proxy", "rpc-server", "dist", "client", "version", "status", "demo")

app = typer.Typer(
    name="olol",
    help="OLOL turns many Ollama / llama.cpp hosts into one LLM cluster.\n\n"
    "Run one mode per process: `olol server` on every inference host, `olol proxy` once "
    "as the cluster's Ollama-compatible endpoint. `olol --mode MODE ...` is the same as "
    "`olol MODE ...`.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    mode: str | None = typer.Option(None, "--mode", help=f"Run this mode: {', '.join(MODES)}.", show_default=False),
) -> None:
    """OLOL turns many Ollama / llama.cpp hosts into one LLM cluster."""
    # `--mode X` is rewritten into the subcommand X by main() before typer parses.


server_cmd.register(app)
proxy_cmd.register(app)
rpc_cmd.register(app)
dist_cmd.register(app)
client_cmd.register(app)
info_cmd.register(app)
status_cmd.register(app)
models_cmd.register(app)
demo_cmd.register(app)
certs_cmd.register(app)


def rewrite_mode(args: Sequence[str]) -> list[str]:
    """`--mode X` / `--mode=X` anywhere before the subcommand becomes the subcommand X."""
    out = list(args)
    for i, arg in enumerate(out):
        if arg in MODES:
            break
        if arg == "--mode" and i + 1 < len(out):
            return [*out[:i], out[i + 1], *out[i + 2:]]
        if arg.startswith("--mode="):
            return [*out[:i], arg.split("=", 1)[1], *out[i + 1:]]
    return out


def main(argv: Sequence[str] | None = None) -> None:
    args = rewrite_mode(sys.argv[1:] if argv is None else argv)
    app(args=args, prog_name="olol")


def _mode_main(mode: str) -> None:
    main([mode, *sys.argv[1:]])


def server_main() -> None:
    _mode_main("server")


def proxy_main() -> None:
    _mode_main("proxy")


def rpc_main() -> None:
    _mode_main("rpc-server")


def dist_main() -> None:
    _mode_main("dist")


def client_main() -> None:
    _mode_main("client")
