"""`olol server`'s host tuning options: flag > Ollama's environment variable > config key > default.

Each option is a `setting` field of `HostOptions`, declared once with the variable an Ollama operator
already sets; `host_settings` resolves them into the one `HostSettings` the agent applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from olol.backends.host_settings import KV_CACHE_TYPES, HostSettings
from olol.cli.common import parse_size
from olol.cli.options import Given, resolve
from olol.config import ConfigError, Settings, setting
from olol.errors import OlolError

__all__ = ["HostOptions", "host_settings"]

@dataclass
class HostOptions:
    """The host's tuning: `olol server`'s options, each with the variable an Ollama operator already sets."""

    flash_attention: bool = setting(
        False, "--flash-attention/--no-flash-attention",
        help="Flash attention: llama-server -fa on; OLLAMA_FLASH_ATTENTION for --ollama-serve.",
        env="OLLAMA_FLASH_ATTENTION",
    )
    numa: bool = setting(
        False, "--numa/--no-numa", help="Spread threads and memory over NUMA nodes: llama-server --numa distribute.",
        env="OLLAMA_NUMA",
    )
    keep_alive: str | None = setting(
        None, "--keep-alive",
        help="How long an idle model stays loaded when a request sets no keep_alive (5m, 1h, -1 forever, 0 at once).",
        env="OLLAMA_KEEP_ALIVE", shown="5m",
    )
    memory_lock: bool = setting(
        False, "--memory-lock/--no-memory-lock", help="Lock model weights in RAM: llama-server --load-mode mmap+mlock.",
        env="OLLAMA_MEMORY_LOCK",
    )
    # A Go duration ("5m") or seconds: typed by the reader (_seconds), so a config file may give either.
    load_timeout: str | None = setting(
        None, "--load-timeout",
        help="How long a model may take to load before the request fails with llama-server's log "
        "(OLLAMA_LOAD_TIMEOUT for --ollama-serve).", env="OLLAMA_LOAD_TIMEOUT", shown="5m",
    )
    quantize: str = setting(
        "", "--quantize",
        help=f"KV cache type ({', '.join(KV_CACHE_TYPES)}): llama-server -ctk/-ctv, OLLAMA_KV_CACHE_TYPE for "
        "--ollama-serve; quantized types need --flash-attention (else f16, as in Ollama); "
        "$OLLAMA_KV_CACHE_TYPE when unset.", env="OLLAMA_QUANTIZE", shown="f16",
    )
    context_window: int | None = setting(
        None, "--context-window",
        help="Context tokens per request, i.e. per llama.cpp slot (llama-server gets -c this x --parallel); "
        "OLLAMA_CONTEXT_LENGTH for --ollama-serve and num_ctx for requests without one.",
        env="OLLAMA_CONTEXT_WINDOW", type=int, shown="2048 on llama.cpp, Ollama's own",
    )
    debug: bool = setting(
        False, "--debug/--no-debug", help="Debug logs from the agent and its engine (llama-server -lv 4, "
        "OLLAMA_DEBUG=1).", env="OLLAMA_DEBUG",
    )
    max_memory: str | None = setting(
        None, "--max-memory",
        help="Memory this host reports and loads models into at most (e.g. 12GiB): placement, auto-split and the "
        "scheduler respect it.", env="OLOL_MAX_MEMORY", shown="all it has",
    )


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


def host_settings(s: Settings, given: Given, *, log_level: str) -> HostSettings:
    """Resolve every tuning setting from its four sources; ConfigError says which one is wrong."""
    o = resolve(HostOptions, s, given, env_prefix="OLOL_SERVER_")
    kv = o["quantize"] or s.get("kv_cache_type", None, "f16", env="OLLAMA_KV_CACHE_TYPE")
    window: Any = o["context_window"]
    memory = o["max_memory"]
    try:
        return HostSettings(
            flash_attention=o["flash_attention"],
            numa=o["numa"],
            keep_alive=_text(o["keep_alive"]),
            memory_lock=o["memory_lock"],
            load_timeout=_seconds(o["load_timeout"] or "5m"),
            quantize=str(kv).lower(),
            context_window=None if window in (None, "") else int(window),
            debug=o["debug"],
            log_level=log_level,
            max_memory=parse_size(str(memory)) if memory else None,
        )
    except (ValueError, OlolError) as exc:
        raise ConfigError(str(exc)) from None
