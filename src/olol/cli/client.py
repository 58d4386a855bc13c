"""`olol client`: send one prompt to an agent (gRPC) or a proxy (`--url`) and stream the answer.

Imports inside functions are start-up cost kept off the other commands (see `olol.cli`).
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import typer

from olol.cli import security_options as sec
from olol.cli.common import fail
from olol.cli.options import Given, resolve, settings_options
from olol.config import ConfigError, Settings, setting
from olol.errors import OlolError

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


#: Environment variables of `olol client`'s settings that have no historical name of their own.
ENV_PREFIX = "OLOL_CLIENT_"


@dataclass
class ClientOptions:
    """`olol client`'s settings (no config file: flag > env > default)."""

    host: str = setting("localhost", "--host", help="Agent host.")
    port: int = setting(50051, "--port", "-p", help="Agent gRPC port.")
    url: str | None = setting(
        None, "--url", "-u", help="A proxy's (or Ollama's) HTTP URL instead of an agent: http(s)://host:port.",
        shown="none: the agent at --host:--port",
    )
    model: str = setting("", "--model", "-m", help="Model name, e.g. llama3.2 or tiny.", shown="required")
    prompt: str = setting("", "--prompt", help="The prompt (or user message with --chat).", shown="required")
    chat: bool = setting(False, "--chat", help="Use the chat endpoint instead of generate.")
    system: str | None = setting(None, "--system", help="System prompt.")
    temperature: float | None = setting(
        None, "--temperature", help="Sampling temperature (0 = greedy).", type=float, shown="the model's"
    )
    seed: int | None = setting(None, "--seed", help="Sampling seed.", type=int, shown="random")
    num_predict: int | None = setting(
        None, "--num-predict", "-n", help="Maximum tokens to generate.", type=int, shown="the model's"
    )
    stream: bool = setting(True, "--stream/--no-stream", help="Print tokens as they arrive.")
    token: str | None = setting(
        None, "--token", help="Cluster token, for an agent; prefer the environment variable: a flag shows in ps.",
        env="OLOL_TOKEN",
    )
    token_file: str | None = setting(
        None, "--token-file", help="File holding the cluster token.", env="OLOL_TOKEN_FILE"
    )


def register(app: typer.Typer) -> None:
    @app.command("client")
    @settings_options(ClientOptions, sec.ClientCredentials, env_prefix=ENV_PREFIX)
    def client(given: Given) -> None:
        """Send one prompt to an OLOL agent (or with --url, a proxy) and print the answer.

        Examples:
          olol client --host localhost --port 50051 --model tiny --prompt "Hello"
          olol client --host gpu1 --token-file ~/.olol/token --ca ca.crt --model tiny --prompt "Hello"
          olol client --url https://olol.lan:11434 --api-key KEY --ca ca.crt --model tiny --prompt "Hello"
        """
        try:
            o = ClientOptions(**resolve(ClientOptions, Settings("client"), given, env_prefix=ENV_PREFIX))
            for name in ("model", "prompt"):
                if not getattr(o, name):
                    fail(f"--{name} is required")
            options = {
                k: v
                for k, v in (("temperature", o.temperature), ("seed", o.seed), ("num_predict", o.num_predict))
                if v is not None
            }
            credentials = sec.client_credentials(given, token=o.token, token_file=o.token_file)
        except ConfigError as exc:
            fail(str(exc))
        target = o.url if o.url else f"{o.host}:{o.port}"
        code = asyncio.run(_run(target, o.model, o.prompt, o.chat, o.system, options, o.stream, credentials))
        raise typer.Exit(code=code)
