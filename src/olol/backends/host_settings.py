"""The tuning settings of one inference host, and what each becomes in its engine.

An operator tunes a host with Ollama's environment variables (`OLLAMA_FLASH_ATTENTION`,
`OLLAMA_KEEP_ALIVE`, ...); `olol server` reads the same ones (its flags and config keys
win over them) into one `HostSettings`, and this module is the one place that says how
they reach the engine:

* a llama.cpp host: flags of every supervised llama-server (`llama_server_config`);
* an Ollama host the agent starts itself (`--ollama-serve`): Ollama's own environment
  (`ollama_environment`);
* any host: the defaults the agent puts on requests that do not set them
  (`request_defaults`), and a cap on the memory it reports and loads into.

`effective()` is what the host reports (`/api/status`, the hardware report): the values
in force after fallbacks, not merely the ones asked for.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

__all__ = ["KV_CACHE_TYPES", "LOG_VERBOSITY", "HostSettings"]

log = logging.getLogger(__name__)

# What llama.cpp (and Ollama's OLLAMA_KV_CACHE_TYPE) accept for the KV cache.
KV_CACHE_TYPES = ("f16", "bf16", "f32", "q8_0", "q5_0", "q5_1", "q4_0", "q4_1", "iq4_nl")
DEFAULT_KEEP_ALIVE = "5m"  # Ollama's
# Our log levels as llama.cpp's `-lv` thresholds (1 error, 2 warning, 3 info, 4 debug).
LOG_VERBOSITY = {"critical": 1, "error": 1, "warning": 2, "info": 3, "debug": 4}


@dataclass(frozen=True)
class HostSettings:
    flash_attention: bool = False  # OLLAMA_FLASH_ATTENTION
    numa: bool = False  # OLLAMA_NUMA: spread threads and memory over NUMA nodes
    # OLLAMA_KEEP_ALIVE: how long an idle model stays loaded (-1 forever, 0 at once); None: the engine's
    # default (5m), and an Ollama host keeps its own OLLAMA_KEEP_ALIVE.
    keep_alive: str | None = None
    memory_lock: bool = False  # OLLAMA_MEMORY_LOCK: lock the weights in RAM (mlock)
    load_timeout: float = 300.0  # OLLAMA_LOAD_TIMEOUT, seconds: how long a model may take to load
    quantize: str = "f16"  # OLLAMA_QUANTIZE: KV cache type, and the quant level this host prefers for pulls
    context_window: int | None = None  # OLLAMA_CONTEXT_WINDOW: tokens per request (per slot); None: engine default
    debug: bool = False  # OLLAMA_DEBUG
    log_level: str = "info"  # OLLAMA_LOG_LEVEL / OLOL_LOG_LEVEL
    max_memory: int | None = None  # bytes this host reports and loads models into at most; None: all it has

    def __post_init__(self) -> None:
        if self.quantize not in KV_CACHE_TYPES:
            raise ValueError(f"quantize must be one of {', '.join(KV_CACHE_TYPES)}, not {self.quantize!r}")
        if self.keep_alive is not None:
            self.keep_alive_ns  # noqa: B018 - parsed now: a malformed duration fails at startup, not per request
        if self.context_window is not None and self.context_window < 1:
            raise ValueError(f"context window must be positive, not {self.context_window}")
        if self.load_timeout <= 0:
            raise ValueError(f"load timeout must be positive, not {self.load_timeout}")
        if self.max_memory is not None and self.max_memory <= 0:
            raise ValueError(f"max memory must be positive, not {self.max_memory}")

    # ------------------------------------------------------------------ derived values
    @property
    def keep_alive_ns(self) -> int:
        """The default keep_alive in ns; `FOREVER` (-1) for a negative one."""
        # Imported here: `olol server --help` builds its options from these settings, and the wire
        # module imports protobuf (tests/packaging/test_startup.py).
        from olol.wire.values import duration_from_json

        return duration_from_json(DEFAULT_KEEP_ALIVE if self.keep_alive is None else self.keep_alive)

    @property
    def kv_cache_type(self) -> str:
        """The KV cache type in force: a quantized cache needs flash attention, as Ollama requires too
        (llama.cpp refuses a quantized V cache without it); without, Ollama falls back to f16."""
        if self.quantize in ("f16", "f32", "bf16") or self.flash_attention:
            return self.quantize
        return "f16"

    @property
    def verbosity(self) -> int:
        return LOG_VERBOSITY["debug"] if self.debug else LOG_VERBOSITY.get(self.log_level.lower(), 3)

    def warn_fallbacks(self) -> None:
        if self.kv_cache_type != self.quantize:
            log.warning("quantize=%s needs flash attention: KV cache stays f16", self.quantize)

    # ------------------------------------------------------------------ per engine
    def llama_server_options(self) -> dict[str, Any]:
        """`LlamaServerConfig` fields these settings set (context only when one was asked for)."""
        options: dict[str, Any] = {
            "flash_attention": self.flash_attention,
            "kv_cache_type": self.kv_cache_type,
            "numa": self.numa,
            "mlock": self.memory_lock,
            "ready_timeout": self.load_timeout,
            "verbosity": self.verbosity,
        }
        if self.context_window is not None:
            options["ctx_size"] = self.context_window
        return options

    def ollama_environment(self, host: str) -> dict[str, str]:
        """Ollama's own variables for an `ollama serve` the agent starts, listening on `host`. What is left
        at its default is not set, so Ollama's own default (which may change between its releases) holds."""
        env = {"OLLAMA_HOST": host, "OLLAMA_LOAD_TIMEOUT": f"{self.load_timeout:g}s"}
        if self.flash_attention:
            env["OLLAMA_FLASH_ATTENTION"] = "1"
        if self.keep_alive is not None:
            env["OLLAMA_KEEP_ALIVE"] = self.keep_alive
        if self.quantize != "f16":
            env["OLLAMA_KV_CACHE_TYPE"] = self.quantize
        if self.debug:
            env["OLLAMA_DEBUG"] = "1"
        if self.context_window is not None:
            env["OLLAMA_CONTEXT_LENGTH"] = str(self.context_window)
        return env

    def request_defaults(self, request: dict[str, Any]) -> dict[str, Any]:
        """`request` with the host's keep_alive and num_ctx where the client set none (None counts as unset)."""
        out = dict(request)
        if out.get("keep_alive") is None and self.keep_alive is not None:
            out["keep_alive"] = self.keep_alive
        if self.context_window is not None:
            options = dict(out.get("options") or {})
            if options.get("num_ctx") is None:
                options["num_ctx"] = self.context_window
                out["options"] = options
        return out

    def effective(self) -> dict[str, str]:
        """What is in force, as strings (the hardware report's map and `/api/status`)."""
        values = dataclasses.asdict(self)
        values["kv_cache_type"] = self.kv_cache_type
        values["keep_alive"] = "-1" if self.keep_alive_ns < 0 else self.keep_alive or DEFAULT_KEEP_ALIVE
        out: dict[str, str] = {}
        for key, value in values.items():
            if value is None:
                continue
            out[key] = ("true" if value else "false") if isinstance(value, bool) else f"{value:g}" if isinstance(
                value, float
            ) else str(value)
        return out
