"""`olol server`'s host tuning options: flag > Ollama's environment variable > config key > default.

Each option is declared here once, with the variable an Ollama operator already sets;
`host_settings` resolves them into the one `HostSettings` the agent applies.
"""

from __future__ import annotations

from typing import Any

import typer

from olol.backends.host_settings import KV_CACHE_TYPES, HostSettings
from olol.cli.common import parse_size
from olol.config import ConfigError, Settings
from olol.errors import OlolError

__all__ = ["host_settings"]

FLASH_ATTENTION = typer.Option(
    None, "--flash-attention/--no-flash-attention",
    help="Flash attention: llama-server -fa on; OLLAMA_FLASH_ATTENTION for --ollama-serve "
    "\\[env var: OLLAMA_FLASH_ATTENTION]  \\[default: off]", show_default=False,
)  # fmt: skip
NUMA = typer.Option(
    None, "--numa/--no-numa",
    help="Spread threads and memory over NUMA nodes: llama-server --numa distribute "
    "\\[env var: OLLAMA_NUMA]  \\[default: off]", show_default=False,
)  # fmt: skip
KEEP_ALIVE = typer.Option(
    None, "--keep-alive",
    help="How long an idle model stays loaded when a request sets no keep_alive (5m, 1h, -1 forever, "
    "0 at once) \\[env var: OLLAMA_KEEP_ALIVE]  \\[default: 5m]", show_default=False,
)  # fmt: skip
MEMORY_LOCK = typer.Option(
    None, "--memory-lock/--no-memory-lock",
    help="Lock model weights in RAM: llama-server --load-mode mmap+mlock "
    "\\[env var: OLLAMA_MEMORY_LOCK]  \\[default: off]", show_default=False,
)  # fmt: skip
LOAD_TIMEOUT = typer.Option(
    None, "--load-timeout",
    help="How long a model may take to load before the request fails with llama-server's log "
    "(OLLAMA_LOAD_TIMEOUT for --ollama-serve) \\[env var: OLLAMA_LOAD_TIMEOUT]  \\[default: 5m]",
    show_default=False,
)  # fmt: skip
QUANTIZE = typer.Option(
    None, "--quantize",
    help=f"KV cache type ({', '.join(KV_CACHE_TYPES)}): llama-server -ctk/-ctv, OLLAMA_KV_CACHE_TYPE for "
    "--ollama-serve; quantized types need --flash-attention (else f16, as in Ollama) "
    "\\[env var: OLLAMA_QUANTIZE, then OLLAMA_KV_CACHE_TYPE]  \\[default: f16]", show_default=False,
)  # fmt: skip
CONTEXT_WINDOW = typer.Option(
    None, "--context-window",
    help="Context tokens per request, i.e. per llama.cpp slot (llama-server gets -c this x --parallel); "
    "OLLAMA_CONTEXT_LENGTH for --ollama-serve and num_ctx for requests without one "
    "\\[env var: OLLAMA_CONTEXT_WINDOW]  \\[default: 2048 on llama.cpp, Ollama's own]",
    show_default=False,
)  # fmt: skip
DEBUG = typer.Option(
    None, "--debug/--no-debug",
    help="Debug logs from the agent and its engine (llama-server -lv 4, OLLAMA_DEBUG=1) "
    "\\[env var: OLLAMA_DEBUG]  \\[default: off]", show_default=False,
)  # fmt: skip
MAX_MEMORY = typer.Option(
    None, "--max-memory",
    help="Memory this host reports and loads models into at most (e.g. 12GiB): placement, auto-split and "
    "the scheduler respect it \\[env var: OLOL_MAX_MEMORY]  \\[default: all it has]", show_default=False,
)  # fmt: skip


def _seconds(value: Any) -> float:
    """A load timeout as Ollama reads it: a Go duration ("5m") or a number of seconds."""
    from olol.wire.values import duration_from_json  # not at import: the wire module imports protobuf

    try:
        ns = duration_from_json(value)
    except OlolError as exc:
        raise ConfigError(f"load timeout: {exc.message}") from None
    if ns <= 0:
        raise ConfigError(f"load timeout must be positive, not {value!r}")
    return ns / 1e9


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def host_settings(
    s: Settings,
    *,
    flash_attention: bool | None,
    numa: bool | None,
    keep_alive: str | None,
    memory_lock: bool | None,
    load_timeout: str | None,
    quantize: str | None,
    context_window: int | None,
    debug: bool | None,
    max_memory: str | None,
    log_level: str,
) -> HostSettings:
    """Resolve every tuning setting from its four sources; ConfigError says which one is wrong."""
    kv = s.get("quantize", quantize, "", env="OLLAMA_QUANTIZE") or s.get("kv_cache_type", None, "f16",
                                                                          env="OLLAMA_KV_CACHE_TYPE")
    window: Any = s.get("context_window", context_window, None, env="OLLAMA_CONTEXT_WINDOW")
    memory = s.get("max_memory", max_memory, None, env="OLOL_MAX_MEMORY")
    try:
        return HostSettings(
            flash_attention=s.get("flash_attention", flash_attention, False, env="OLLAMA_FLASH_ATTENTION"),
            numa=s.get("numa", numa, False, env="OLLAMA_NUMA"),
            keep_alive=_text(s.get("keep_alive", keep_alive, None, env="OLLAMA_KEEP_ALIVE")),
            memory_lock=s.get("memory_lock", memory_lock, False, env="OLLAMA_MEMORY_LOCK"),
            load_timeout=_seconds(s.get("load_timeout", load_timeout, None, env="OLLAMA_LOAD_TIMEOUT") or "5m"),
            quantize=str(kv).lower(),
            context_window=None if window in (None, "") else int(window),
            debug=s.get("debug", debug, False, env="OLLAMA_DEBUG"),
            log_level=log_level,
            max_memory=parse_size(str(memory)) if memory else None,
        )
    except (ValueError, OlolError) as exc:
        raise ConfigError(str(exc)) from None
