"""`olol server`: the agent on an inference host."""

from __future__ import annotations

from pathlib import Path

import typer

from olol.cli import security_options as sec
from olol.cli.common import CONFIG_OPTION, LOG_LEVEL_OPTION, fail, settings, setup_logging
from olol.config import ConfigError


def register(app: typer.Typer) -> None:
    @app.command("server")
    def server(
        host: str = typer.Option(
            None, "--host", help="Address to serve gRPC on.  [default: 0.0.0.0]", show_default=False
        ),
        port: int = typer.Option(
            None, "--port", "-p", help="gRPC port [env: OLOL_PORT].  [default: 50051]", show_default=False
        ),
        backend: str = typer.Option(
            None, "--backend", help="ollama or llamacpp.  [default: ollama]", show_default=False
        ),
        ollama_host: str = typer.Option(
            None,
            "--ollama-host",
            help="Ollama's URL [env: OLLAMA_HOST].  [default: http://localhost:11434]",
            show_default=False,
        ),
        llama_url: str = typer.Option(None, "--llama-url", help="URL of a running llama-server (llamacpp backend)."),
        model: Path = typer.Option(
            None, "--model", "-m", help="GGUF file: launch and supervise llama-server on it (llamacpp backend)."
        ),
        model_name: str = typer.Option(
            None, "--model-name", help="Name the llama.cpp model is served as (default: the file's stem)."
        ),
        llama_server_bin: str = typer.Option(
            None, "--llama-server-bin", help="llama-server executable [env: OLOL_LLAMA_SERVER]."
        ),
        ctx_size: int = typer.Option(
            None, "--ctx-size", help="Context size for a launched llama-server. [default: 2048]", show_default=False
        ),
        threads: int = typer.Option(None, "--threads", "-t", help="Threads for a launched llama-server."),
        parallel: int = typer.Option(
            None, "--parallel", help="Requests served at once (default: asked from the backend)."
        ),
        use_async: bool = typer.Option(
            None,
            "--async/--threaded",
            help="Serve with grpc.aio instead of a thread pool.  [default: threaded]",
            show_default=False,
        ),
        grace: float = typer.Option(
            None, "--grace", help="Seconds SIGTERM waits for in-flight streams. [default: 10]", show_default=False
        ),
        ollama_models: Path = typer.Option(
            None, "--ollama-models", help="Ollama's models dir, read to copy models to peers "
            "(env OLLAMA_MODELS; default ~/.ollama/models).", show_default=False
        ),
        models_dir: Path = typer.Option(
            None, "--models-dir", help="GGUF dir of a llama.cpp host, for model copies (default: --model's dir)."
        ),
        transfer_dir: Path = typer.Option(
            None, "--transfer-dir", help="Where partial model copies wait to be resumed "
            "(default ~/.cache/olol/transfer).", show_default=False
        ),
        transfer_rate: float = typer.Option(
            None, "--transfer-rate", help="Bytes/s this host sends model copies at, at most (default: no limit)."
        ),
        registry: str = typer.Option(
            None, "--registry", help="Registry base URL for models this agent downloads itself, to seed LAN "
            "copies (default https://registry.ollama.ai).", show_default=False
        ),
        token: str = sec.TOKEN,
        token_file: Path = sec.TOKEN_FILE,
        tls_cert: Path = sec.TLS_CERT,
        tls_key: Path = sec.TLS_KEY,
        tls_ca: Path = sec.TLS_CA,
        discovery: bool = sec.DISCOVERY_AGENT,
        mdns: bool = sec.MDNS,
        interface: str = sec.INTERFACE,
        cluster: str = sec.CLUSTER,
        proxy: list[str] = sec.PROXY,
        advertise_host: str = sec.ADVERTISE_HOST,
        config: Path = CONFIG_OPTION,
        log_level: str = LOG_LEVEL_OPTION,
    ) -> None:
        """Serve this host's Ollama or llama.cpp over OLOL's gRPC API (the agent).

        Examples:
          olol server --host 0.0.0.0 --port 50051 --ollama-host http://localhost:11434
          olol server --backend llamacpp --model ./model.gguf
        """
        from olol.agent.config import AgentConfig

        s = settings("server", config)
        setup_logging(s, log_level)
        try:
            cfg = AgentConfig(
                host=s.get("host", host, "0.0.0.0"),
                port=s.get("port", port, 50051, env="OLOL_PORT"),
                backend=s.get("backend", backend, "ollama"),
                ollama_host=s.get("ollama_host", ollama_host, "http://localhost:11434", env="OLLAMA_HOST"),
                llama_url=s.get("llama_url", llama_url, None),
                model=str(s.get("model", model, None) or "") or None,
                model_name=s.get("model_name", model_name, None),
                llama_server_bin=s.get("llama_server_bin", llama_server_bin, None, env="OLOL_LLAMA_SERVER"),
                ctx_size=s.get("ctx_size", ctx_size, 2048),
                threads=s.get("threads", threads, None),
                parallel=s.get("parallel", parallel, None),
                use_async=s.get("async", use_async, False),
                grace=s.get("grace", grace, 10.0),
                security=sec.security_settings(
                    s, token=token, token_file=token_file, tls_cert=tls_cert, tls_key=tls_key, tls_ca=tls_ca
                ),
                discovery=sec.discovery_settings(
                    s, discovery=discovery, mdns=mdns, interface=interface, cluster=cluster, proxy=proxy,
                    advertise_host=advertise_host,
                ),
                ollama_models=str(s.get("ollama_models", ollama_models, None, env="OLLAMA_MODELS") or "") or None,
                models_dir=str(s.get("models_dir", models_dir, None) or "") or None,
                transfer_dir=str(s.get("transfer_dir", transfer_dir, None) or "") or None,
                transfer_rate=s.get("transfer_rate", transfer_rate, None),
                registry=str(s.get("registry", registry, None) or "") or None,
            )
        except ConfigError as exc:
            fail(str(exc))
        if cfg.backend == "ollama" and (cfg.model or cfg.llama_url):
            cfg.backend = "llamacpp"  # --model / --llama-url only make sense for llama.cpp
        from olol.agent.server import run_agent

        try:
            run_agent(cfg)
        except (ValueError, OSError) as exc:
            fail(str(exc), code=1)
