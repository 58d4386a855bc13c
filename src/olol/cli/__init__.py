"""`olol`: one command, every mode (`olol server` == `olol --mode server`).

Start-up is paid on every `olol status`, systemd restart and test, so `olol MODE` imports only
that mode's command module (`main()` builds an app holding just it), and the modes import their
heavy dependencies (grpc, aiohttp, numpy) only when they run. `olol --help` and unknown commands
get the full app, which `from olol.cli import app` also returns. `olol version` skips typer:
importing it (and rich, which it brings) is most of a start.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer

MODES = ("server", "proxy", "rpc-server", "dist", "client", "version", "status", "demo")

# Each command module of olol.cli and the commands its register(app) adds, in `olol --help` order.
COMMAND_MODULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("server", ("server",)),
    ("proxy", ("proxy",)),
    ("rpc", ("rpc-server",)),
    ("dist", ("dist",)),
    ("client", ("client",)),
    ("info", ("version",)),
    ("status", ("status",)),
    ("models", ("pull", "models")),
    ("demo", ("demo",)),
    ("certs", ("certs",)),
    ("hosts", ("drain", "undrain")),
)
MODULE_OF = {command: module for module, commands in COMMAND_MODULES for command in commands}

HELP = (
    "OLOL turns many Ollama / llama.cpp hosts into one LLM cluster.\n\n"
    "Run one mode per process: `olol server` on every inference host, `olol proxy` once "
    "as the cluster's Ollama-compatible endpoint. `olol --mode MODE ...` is the same as "
    "`olol MODE ...`."
)


def _print_version(value: bool) -> None:
    if value:
        import typer

        from olol import __version__

        typer.echo(f"olol {__version__}")
        raise typer.Exit()


def _new_app() -> typer.Typer:
    """The root every app shares; `--mode` is shown in its help (main() rewrites it before typer parses)."""
    import typer

    app = typer.Typer(
        name="olol",
        help=HELP,
        no_args_is_help=True,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
        pretty_exceptions_enable=False,
    )

    @app.callback()
    def _root(
        mode: str | None = typer.Option(
            None, "--mode", help=f"Run this mode: {', '.join(MODES)}.", show_default=False
        ),
        version: bool = typer.Option(
            False, "--version", "-V", callback=_print_version, is_eager=True, help="Print OLOL's version and exit."
        ),
    ) -> None:
        """OLOL turns many Ollama / llama.cpp hosts into one LLM cluster."""

    return app


def _register(app: typer.Typer, module: str) -> None:
    importlib.import_module(f"olol.cli.{module}").register(app)


@cache
def full_app() -> typer.Typer:
    """Every command: for `olol --help`, unknown commands and `from olol.cli import app`."""
    app = _new_app()
    for module, _ in COMMAND_MODULES:
        _register(app, module)
    return app


@cache
def command_app(module: str) -> typer.Typer:
    """The root with one command module's commands: what `olol MODE` runs (no other mode is imported)."""
    app = _new_app()
    _register(app, module)
    return app


def __getattr__(name: str) -> typer.Typer:
    # `from olol.cli import app`: the full app, built on first use (tests, typer's CliRunner).
    if name == "app":
        return full_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    if args[:1] == ["_netns-gate"]:
        # The ggml worker's namespace gate (olol.rpc.netns_gate), which the one-file binary, having no
        # `python -m`, runs as itself: before typer, and before anything that could start a thread.
        from olol.rpc.netns_gate import main as gate

        sys.exit(gate(args[1:]))
    if args == ["version"]:
        # What scripts, health checks and install checks run most: the command's own text, without typer.
        from olol.cli.info import print_version

        print_version()
        return
    module = MODULE_OF.get(args[0]) if args else None
    target = command_app(module) if module else full_app()
    target(args=args, prog_name="olol")


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
