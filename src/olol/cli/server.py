"""`olol server`: the agent on an inference host."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from olol.agent.config import AgentConfig
from olol.cli import host_options as ho
from olol.cli import security_options as sec
from olol.cli.common import CONFIG_OPTION, SERVER_LOG_LEVEL_OPTION, fail, settings, setup_logging
from olol.cli.options import Given, resolve, settings_options
from olol.config import ConfigError

#: Environment variables of `olol server`'s settings that have no historical name of their own.
ENV_PREFIX = "OLOL_SERVER_"


#: What `olol server` takes: the agent's settings and the bundles it shares with other modes.
SETTINGS = (AgentConfig, ho.HostOptions, sec.TokenTls, sec.Advertise, sec.Mdns, sec.Lan)


def register(app: typer.Typer) -> None:
    @app.command("server")
    @settings_options(*SETTINGS, env_prefix=ENV_PREFIX)
    def server(given: Given, config: Path = CONFIG_OPTION, log_level: str = SERVER_LOG_LEVEL_OPTION) -> None:
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
            debug_on = resolve(ho.HostOptions, s, given, env_prefix=ENV_PREFIX)["debug"]
        except ConfigError as exc:
            fail(str(exc))
        level = "debug" if debug_on else (level or "info").lower()
        setup_logging(s, level)
        try:
            host_settings = ho.host_settings(s, given, log_level=level)
            resolved = resolve(AgentConfig, s, given, env_prefix=ENV_PREFIX)
            if host_settings.context_window is not None:
                resolved["ctx_size"] = host_settings.context_window  # --context-window names the same thing
            cfg = AgentConfig(
                **resolved,
                settings=host_settings,
                security=sec.security_settings(s, given, ENV_PREFIX),
                discovery=sec.discovery_settings(s, given, ENV_PREFIX, sec.Advertise, sec.Mdns),
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
