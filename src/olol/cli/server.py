"""`olol server`: the agent on an inference host."""

from __future__ import annotations

from pathlib import Path

import typer

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
