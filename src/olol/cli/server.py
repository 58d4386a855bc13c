"""`olol server`: the agent on an inference host."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from olol.agent.config import AgentConfig
from olol.cli import host_options as ho
from olol.cli import security_options as sec
from olol.cli.common import CONFIG_OPTION, LOG_LEVEL_OPTION, fail, settings, setup_logging
from olol.cli.options import Given, resolve, settings_options
from olol.config import ConfigError

#: Environment variables of `olol server`'s settings that have no historical name of their own.
ENV_PREFIX = "OLOL_SERVER_"


def register(app: typer.Typer) -> None:
    @app.command("server")
    @settings_options(AgentConfig, env_prefix=ENV_PREFIX)
    def server(
        given: Given,
        context_window: int = ho.CONTEXT_WINDOW,
        flash_attention: bool = ho.FLASH_ATTENTION,
        numa: bool = ho.NUMA,
        keep_alive: str = ho.KEEP_ALIVE,
        memory_lock: bool = ho.MEMORY_LOCK,
        load_timeout: str = ho.LOAD_TIMEOUT,
        quantize: str = ho.QUANTIZE,
        debug: bool = ho.DEBUG,
        max_memory: str = ho.MAX_MEMORY,
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
          olol server --backend llamacpp --models-dir ./gguf --keep-alive 10m --max-memory 12GiB
          olol server --ollama-serve --flash-attention --quantize q8_0
        """
        s = settings("server", config)
        # Ollama's own variables count for the host too: OLLAMA_DEBUG, then OLLAMA_LOG_LEVEL.
        level = s.get("log_level", log_level, None, env="OLOL_LOG_LEVEL") or os.environ.get("OLLAMA_LOG_LEVEL")
        try:
            debug_on = s.get("debug", debug, False, env="OLLAMA_DEBUG")
        except ConfigError as exc:
            fail(str(exc))
        level = "debug" if debug_on else (level or "info").lower()
        setup_logging(s, level)
        try:
            host_settings = ho.host_settings(
                s, flash_attention=flash_attention, numa=numa, keep_alive=keep_alive, memory_lock=memory_lock,
                load_timeout=load_timeout, quantize=quantize, context_window=context_window, debug=debug,
                max_memory=max_memory, log_level=level,
            )  # fmt: skip
            resolved = resolve(AgentConfig, s, given, env_prefix=ENV_PREFIX)
            if host_settings.context_window is not None:
                resolved["ctx_size"] = host_settings.context_window  # --context-window names the same thing
            cfg = AgentConfig(
                **resolved,
                settings=host_settings,
                security=sec.security_settings(
                    s, token=token, token_file=token_file, tls_cert=tls_cert, tls_key=tls_key, tls_ca=tls_ca
                ),
                discovery=sec.discovery_settings(
                    s, discovery=discovery, mdns=mdns, interface=interface, cluster=cluster, proxy=proxy,
                    advertise_host=advertise_host,
                ),
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
