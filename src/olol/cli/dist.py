"""`olol dist`: one model split across `olol rpc-server` hosts, served by llama-server."""

from __future__ import annotations

from pathlib import Path

import typer

from olol.cli import security_options as sec
from olol.cli.common import CONFIG_OPTION, LOG_LEVEL_OPTION, fail, settings, setup_logging
from olol.cli.rpc import TOKEN_FILE_OPTION, TOKEN_OPTION, as_path, as_str, no_grpc_fork_handlers
from olol.config import ConfigError


def register(app: typer.Typer) -> None:
    @app.command("dist")
    def dist(
        servers: str = typer.Option(
            None,
            "--servers",
            "--rpc-servers",
            help="rpc-servers, in split order (by latency, the one holding the output layer may move last): "
            "h1:port,h2:port \\[env var: OLOL_RPC_SERVERS].",
        ),
        model: str = typer.Option(
            None,
            "--model",
            "-m",
            help="GGUF path, or an Ollama model name (resolved through the Ollama models directory).",
        ),
        models_dir: Path = typer.Option(None, "--models-dir",
            help="Ollama models directory \\[env var: OLLAMA_MODELS]."),
        prompt: str = typer.Option(None, "--prompt", help="Run this one completion, print it and exit."),
        n_predict: int = typer.Option(
            None, "--n-predict", "-n", help="Tokens to generate for --prompt. \\[default: 128]", show_default=False
        ),
        temperature: float = typer.Option(None, "--temperature", help="Sampling temperature for --prompt."),
        plan_only: bool = typer.Option(False, "--plan-only", help="Print the layer plan as a table and exit."),
        transport: str = typer.Option(
            None,
            "--transport",
            help="tunnel (authenticated by the cluster token, optional TLS: ggml bytes on the "
            "rpc-servers' data ports, or in gRPC messages where there is none), grpc (the tunnel in gRPC "
            "messages only: just the gRPC port needs to be open; slower per token) or direct "
            "(llama-server dials the ggml workers: trusted networks only). \\[default: tunnel]",
            show_default=False,
        ),
        host: str = typer.Option(
            None, "--host", help="Address of the HTTP endpoint.  \\[default: 127.0.0.1]", show_default=False
        ),
        port: int = typer.Option(
            None,
            "--port",
            "-p",
            help="Port of the HTTP endpoint (llama-server's API). \\[default: 8080]",
            show_default=False,
        ),
        agent_port: int = typer.Option(
            None, "--agent-port", help="Also serve the model as an OLOL agent (gRPC) on this port, for `olol proxy`."
        ),
        alias: str = typer.Option(None, "--alias", help="Model name served (default: the file's stem)."),
        ctx_size: int = typer.Option(
            None, "--ctx-size", help="Context tokens (default: the workers' advised --context-window, else 2048)."
        ),
        kv_type: str = typer.Option(
            None, "--kv-type", help="KV cache type: f16, q8_0, q4_0 (default: the workers' --quantize, else f16)."
        ),
        flash_attention: bool = typer.Option(
            None,
            "--flash-attention/--no-flash-attention",
            help="llama-server -fa (default: on if every worker advises it).",
        ),
        threads: int = typer.Option(None, "--threads", "-t", help="CPU threads of llama-server."),
        parallel: int = typer.Option(None, "--parallel", help="Requests llama-server serves at once."),
        margin: float = typer.Option(
            None, "--margin", help="Share of each worker's free memory kept spare. \\[default: 0.1]", show_default=False
        ),
        objective: str = typer.Option(
            None,
            "--objective",
            help="What the layer plan minimises: latency (time per token of a request: llama.cpp runs the "
            "stages one after another, plus a round trip each) or balanced (the slowest stage, for when "
            "stages overlap). \\[default: latency]",
            show_default=False,
        ),
        llama_server_bin: str = typer.Option(
            None, "--llama-server-bin", help="llama-server executable \\[env var: OLOL_LLAMA_SERVER]."
        ),
        token: str = TOKEN_OPTION,
        token_file: Path = TOKEN_FILE_OPTION,
        tls_ca: Path = typer.Option(None, "--tls-ca", help="PEM CA: reach rpc-servers over TLS, verified by it."),
        tls_cert: Path = typer.Option(None, "--tls-cert", help="PEM client certificate (mutual TLS)."),
        tls_key: Path = typer.Option(None, "--tls-key", help="PEM key of --tls-cert."),
        discovery: bool = typer.Option(
            None,
            "--discovery/--no-discovery",
            show_default=False,
            help="Without --servers: find rpc-servers that advertise over mDNS (`olol rpc-server --discovery`).",
        ),
        discovery_wait: float = typer.Option(
            None, "--discovery-wait", help="Seconds to look for rpc-servers. \\[default: 3]", show_default=False
        ),
        interface: str = sec.INTERFACE,
        cluster: str = sec.CLUSTER,
        config: Path = CONFIG_OPTION,
        log_level: str = LOG_LEVEL_OPTION,
    ) -> None:
        """Split one model across rpc-servers and serve it (or run one --prompt, or --plan-only).

        Examples:
          olol dist --servers gpu1:50052,gpu2:50052,cpu1:50052 --model llama3:70b --plan-only
          olol dist --servers gpu1:50052,gpu2:50052 --model ./model.gguf --prompt "Why is the sky blue?"
          olol dist --servers gpu1:50052,gpu2:50052 --model ./model.gguf --port 8080 --agent-port 50051
          olol dist --discovery --interface eth0 --token-file ~/.olol/token --model llama3:70b
        """
        no_grpc_fork_handlers()
        from olol.cli.dist_run import DistRun, run_dist
        from olol.security.tls import TlsFiles
        from olol.security.tokens import load_token
        from olol.split.coordinator import DistConfig
        from olol.split.model_source import ModelSourceError, resolve_model
        from olol.split.workers import parse_servers

        s = settings("dist", config)
        setup_logging(s, log_level)
        try:
            name: str = s.get("model", model, "")
            if not name:
                fail("--model is required")
            path = resolve_model(name, s.get("models_dir", as_str(models_dir), None, env="OLLAMA_MODELS"))
            stem = name if not Path(name).expanduser().is_file() else None
            cluster_token = load_token(s.get("token", token, None), s.get("token_file", as_str(token_file), None))
            listed = s.get("servers", servers, "", env="OLOL_RPC_SERVERS")
            finding = sec.discovery_settings(s, discovery=discovery, interface=interface, cluster=cluster)
            if not listed and finding.enabled:
                import asyncio

                from olol.discovery.rpc_finder import find_rpc_servers

                wait = s.get("discovery_wait", discovery_wait, 3.0)
                listed = ",".join(asyncio.run(find_rpc_servers(finding, cluster_token, wait=wait)))
                if not listed:
                    fail(f"no rpc-server of cluster {finding.cluster!r} advertised within {wait:g}s")
            cfg = DistConfig(
                servers=parse_servers(listed),
                model=path,
                alias=s.get("alias", alias, stem),
                transport=s.get("transport", transport, "tunnel"),
                token=cluster_token,
                tls=TlsFiles(
                    s.get("tls_cert", as_str(tls_cert), None),
                    s.get("tls_key", as_str(tls_key), None),
                    s.get("tls_ca", as_str(tls_ca), None),
                ),
                ctx_size=s.get("ctx_size", ctx_size, None),
                kv_type=s.get("kv_type", kv_type, None),
                flash_attention=s.get("flash_attention", flash_attention, None),
                threads=s.get("threads", threads, None),
                parallel=s.get("parallel", parallel, None),
                margin=s.get("margin", margin, 0.1),
                objective=s.get("objective", objective, "latency"),
                llama_server_bin=as_path(s.get("llama_server_bin", llama_server_bin, None, env="OLOL_LLAMA_SERVER")),
            )
            run = DistRun(
                plan_only=plan_only,
                prompt=prompt,
                n_predict=s.get("n_predict", n_predict, 128),
                temperature=temperature,
                host=s.get("host", host, "127.0.0.1"),
                port=s.get("port", port, 8080),
                agent_port=s.get("agent_port", agent_port, None),
            )
        except (ConfigError, ModelSourceError, ValueError, OSError) as exc:
            fail(str(exc))
        from olol.errors import OlolError
        from olol.split.planner import PlanError

        try:
            code = run_dist(cfg, run)
        except PlanError as exc:
            fail(f"cannot split {path.name} over {', '.join(cfg.servers)}: {exc}", code=1)
        except (OlolError, OSError) as exc:
            fail(str(exc), code=1)
        raise typer.Exit(code)
