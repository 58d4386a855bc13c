"""`olol client`: send one prompt to an agent (gRPC) or a proxy (`--url`) and stream the answer."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from olol.cli import security_options as sec
from olol.cli.common import fail
from olol.config import ConfigError

if TYPE_CHECKING:
    from olol.client.credentials import ClientCredentials


async def _run(
    target: str,
    model: str,
    prompt: str,
    chat: bool,
    system: str | None,
    options: dict[str, Any],
    stream: bool,
    credentials: ClientCredentials,
) -> int:
    from olol.aio import backend_for
    from olol.errors import OlolError

    backend = backend_for(target, credentials)
    try:
        final: dict[str, Any] = {}
        if chat:
            messages = ([{"role": "system", "content": system}] if system else []) + [
                {"role": "user", "content": prompt}
            ]
            chunks = backend.chat({"model": model, "messages": messages, "options": options})
        else:
            body: dict[str, Any] = {"model": model, "prompt": prompt, "options": options}
            if system:
                body["system"] = system
            chunks = backend.generate(body)
        text = []
        async for chunk in chunks:
            piece = chunk["message"]["content"] if chat else chunk.get("response", "")
            text.append(piece)
            if stream:
                sys.stdout.write(piece)
                sys.stdout.flush()
            if chunk.get("done"):
                final = chunk
        if not stream:
            sys.stdout.write("".join(text))
        sys.stdout.write("\n")
        if final.get("eval_count"):
            secs = max(final.get("eval_duration", 0), 1) / 1e9
            typer.echo(
                f"[{final['eval_count']} tokens, {final['eval_count'] / secs:.1f} tokens/s, "
                f"done_reason={final.get('done_reason')}]",
                err=True,
            )
        return 0
    except OlolError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        return 1
    finally:
        await backend.close()


def register(app: typer.Typer) -> None:
    @app.command("client")
    def client(
        host: str = typer.Option("localhost", "--host", help="Agent host."),
        port: int = typer.Option(50051, "--port", "-p", help="Agent gRPC port."),
        url: str = typer.Option(
            None, "--url", "-u", help="A proxy's (or Ollama's) HTTP URL instead of an agent: http(s)://host:port."
        ),
        model: str = typer.Option(..., "--model", "-m", help="Model name, e.g. llama3.2 or tiny."),
        prompt: str = typer.Option(..., "--prompt", help="The prompt (or user message with --chat)."),
        chat: bool = typer.Option(False, "--chat", help="Use the chat endpoint instead of generate."),
        system: str = typer.Option(None, "--system", help="System prompt."),
        temperature: float = typer.Option(None, "--temperature", help="Sampling temperature (0 = greedy)."),
        seed: int = typer.Option(None, "--seed", help="Sampling seed."),
        num_predict: int = typer.Option(None, "--num-predict", "-n", help="Maximum tokens to generate."),
        stream: bool = typer.Option(True, "--stream/--no-stream", help="Print tokens as they arrive."),
        token: str = typer.Option(
            None, "--token", help="Cluster token, for an agent \\[env var: OLOL_TOKEN; prefer it: a flag shows in ps]."
        ),
        token_file: Path = sec.TOKEN_FILE,
        api_key: str = sec.CLIENT_API_KEY,
        ca: Path = sec.CLIENT_CA,
        cert: Path = sec.CLIENT_CERT,
        client_key: Path = sec.CLIENT_KEY,
    ) -> None:
        """Send one prompt to an OLOL agent (or with --url, a proxy) and print the answer.

        Examples:
          olol client --host localhost --port 50051 --model tiny --prompt "Hello"
          olol client --host gpu1 --token-file ~/.olol/token --ca ca.crt --model tiny --prompt "Hello"
          olol client --url https://olol.lan:11434 --api-key KEY --ca ca.crt --model tiny --prompt "Hello"
        """
        options = {
            k: v
            for k, v in (("temperature", temperature), ("seed", seed), ("num_predict", num_predict))
            if v is not None
        }
        try:
            credentials = sec.client_credentials(
                api_key=api_key, token=token, token_file=token_file, ca=ca, cert=cert, key=client_key
            )
        except ConfigError as exc:
            fail(str(exc))
        target = url if url else f"{host}:{port}"
        code = asyncio.run(_run(target, model, prompt, chat, system, options, stream, credentials))
        raise typer.Exit(code=code)
