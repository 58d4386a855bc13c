"""Modes this build does not ship yet: they say so and fail, never fake success."""

from __future__ import annotations

import typer


def register(app: typer.Typer, name: str, what: str) -> None:
    @app.command(
        name,
        help=f"{what[0].upper()}{what[1:]} (not available yet in this version).",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )
    def _not_yet(ctx: typer.Context) -> None:
        typer.echo(f"olol {name}: not available yet in this version of OLOL ({what}).", err=True)
        raise typer.Exit(code=2)
