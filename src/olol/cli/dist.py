"""`olol dist`: one model split across `olol rpc-server` hosts, served by llama-server.

Imports inside functions are start-up cost kept off the other commands (see `olol.cli`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from olol.cli import security_options as sec
from olol.cli.common import CONFIG_OPTION, LOG_LEVEL_OPTION, fail, settings, setup_logging
from olol.cli.options import Given, resolve, settings_options
from olol.cli.rpc import as_path, no_grpc_fork_handlers
from olol.config import ConfigError, setting
from olol.errors import OlolError

#: Environment variables of `olol dist`'s settings that have no historical name of their own.
ENV_PREFIX = "OLOL_DIST_"


@dataclass
class DistOptions:
    """`olol dist`'s own settings (the CLI maps them onto `DistConfig` and `DistRun`)."""

    servers: str = setting(
        "", "--servers", "--rpc-servers",
        help="rpc-servers, in split order (by latency, the one holding the output layer may move last): "
        "h1:port,h2:port.", env="OLOL_RPC_SERVERS", shown="none (--discovery)",
    )
    model: str = setting(
        "", "--model", "-m", help="GGUF path, or an Ollama model name (resolved through the Ollama models directory).",
        shown="required",
    )
    models_dir: str | None = setting(None, "--models-dir", help="Ollama models directory.", env="OLLAMA_MODELS",
                                     shown="~/.ollama/models")
    prompt: str | None = setting(None, "--prompt", help="Run this one completion, print it and exit.", shown="serve")
    n_predict: int = setting(128, "--n-predict", "-n", help="Tokens to generate for --prompt.")
    temperature: float | None = setting(
        None, "--temperature", help="Sampling temperature for --prompt.", type=float, shown="llama-server's"
    )
    plan_only: bool = setting(False, "--plan-only", help="Print the layer plan as a table and exit.")
    transport: str = setting(
        "tunnel", "--transport",
        help="tunnel (authenticated by the cluster token, optional TLS: ggml bytes on the rpc-servers' data ports, "
        "or in gRPC messages where there is none), grpc (the tunnel in gRPC messages only: just the gRPC port "
        "needs to be open; slower per token) or direct (llama-server dials the ggml workers: trusted networks only).",
    )
    host: str = setting("127.0.0.1", "--host", help="Address of the HTTP endpoint.")
    port: int = setting(8080, "--port", "-p", help="Port of the HTTP endpoint (llama-server's API).")
    agent_port: int | None = setting(
        None, "--agent-port", help="Also serve the model as an OLOL agent (gRPC) on this port, for `olol proxy`.",
        type=int, shown="off",
    )
    alias: str | None = setting(None, "--alias", help="Model name served.", shown="the file's stem")
    ctx_size: int | None = setting(
        None, "--ctx-size", help="Context tokens.", type=int, shown="the workers' advised --context-window, else 2048"
    )
    kv_type: str | None = setting(
        None, "--kv-type", help="KV cache type: f16, q8_0, q4_0.", shown="the workers' --quantize, else f16"
    )
    flash_attention: bool | None = setting(
        None, "--flash-attention/--no-flash-attention", help="llama-server -fa.", type=bool,
        shown="on if every worker advises it",
    )
    threads: int | None = setting(None, "--threads", "-t", help="CPU threads of llama-server.", type=int,
                                  shown="llama.cpp's")
    parallel: int | None = setting(None, "--parallel", help="Requests llama-server serves at once.", type=int,
                                   shown="llama-server's")
    margin: float = setting(0.1, "--margin", help="Share of each worker's free memory kept spare.")
    objective: str = setting(
        "latency", "--objective",
        help="What the layer plan minimises: latency (time per token of a request: llama.cpp runs the stages one "
        "after another, plus a round trip each) or balanced (the slowest stage, for when stages overlap).",
    )
    llama_server_bin: str | None = setting(
        None, "--llama-server-bin", help="llama-server executable.", env="OLOL_LLAMA_SERVER", shown="found or built"
    )
    discovery: bool = setting(
        False, "--discovery/--no-discovery",
        help="Without --servers: find rpc-servers that advertise over mDNS (`olol rpc-server --discovery`).",
        env="OLOL_DISCOVERY",
    )
    discovery_wait: float = setting(3.0, "--discovery-wait", help="Seconds to look for rpc-servers.")


#: What `olol dist` takes: its own settings and the bundles it shares with other modes.
SETTINGS = (DistOptions, sec.TokenTls, sec.Lan)


def register(app: typer.Typer) -> None:
    @app.command("dist")
    @settings_options(*SETTINGS, env_prefix=ENV_PREFIX)
    def dist(given: Given, config: Path = CONFIG_OPTION, log_level: str = LOG_LEVEL_OPTION) -> None:
        """Split one model across rpc-servers and serve it (or run one --prompt, or --plan-only).

        Examples:
          olol dist --servers gpu1:50052,gpu2:50052,cpu1:50052 --model llama3:70b --plan-only
          olol dist --servers gpu1:50052,gpu2:50052 --model ./model.gguf --prompt "Why is the sky blue?"
          olol dist --servers gpu1:50052,gpu2:50052 --model ./model.gguf --port 8080 --agent-port 50051
          olol dist --discovery --interface eth0 --token-file ~/.olol/token --model llama3:70b
        """
        no_grpc_fork_handlers()
        from olol.cli.dist_run import DistRun, run_dist
        from olol.split.coordinator import DistConfig
        from olol.split.model_source import ModelSourceError, resolve_model
        from olol.split.workers import parse_servers

        s = settings("dist", config)
        setup_logging(s, log_level)
        try:
            o = DistOptions(**resolve(DistOptions, s, given, env_prefix=ENV_PREFIX))
            if not o.model:
                fail("--model is required")
            path = resolve_model(o.model, o.models_dir)
            stem = o.model if not Path(o.model).expanduser().is_file() else None
            cluster_token, tls = sec.token_and_tls(s, given, ENV_PREFIX)
            listed = o.servers
            finding = sec.discovery_settings(s, given, ENV_PREFIX)
            finding.enabled = o.discovery
            if not listed and finding.enabled:
                import asyncio

                from olol.discovery.rpc_finder import find_rpc_servers

                wait = o.discovery_wait
                listed = ",".join(asyncio.run(find_rpc_servers(finding, cluster_token, wait=wait)))
                if not listed:
                    fail(f"no rpc-server of cluster {finding.cluster!r} advertised within {wait:g}s")
            cfg = DistConfig(
                servers=parse_servers(listed),
                model=path,
                alias=o.alias if o.alias is not None else stem,
                transport=o.transport,
                token=cluster_token,
                tls=tls,
                ctx_size=o.ctx_size,
                kv_type=o.kv_type,
                flash_attention=o.flash_attention,
                threads=o.threads,
                parallel=o.parallel,
                margin=o.margin,
                objective=o.objective,
                llama_server_bin=as_path(o.llama_server_bin),
            )
            run = DistRun(
                plan_only=o.plan_only,
                prompt=o.prompt,
                n_predict=o.n_predict,
                temperature=o.temperature,
                host=o.host,
                port=o.port,
                agent_port=o.agent_port,
            )
        except (ConfigError, ModelSourceError, ValueError, OSError) as exc:
            fail(str(exc))
        from olol.split.planner import PlanError

        try:
            code = run_dist(cfg, run)
        except PlanError as exc:
            fail(f"cannot split {path.name} over {', '.join(cfg.servers)}: {exc}", code=1)
        except (OlolError, OSError) as exc:
            fail(str(exc), code=1)
        raise typer.Exit(code)
