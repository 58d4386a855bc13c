"""Launch and supervise one `llama-server` process serving one GGUF model.

The process binds `--port 0` and we read the port it got from its log, so there
is no window in which another program can take a port we picked. Readiness is
`GET /health` answering 200 (llama-server answers 503 while loading). A process
that dies is restarted with exponential backoff, a bounded number of times per
`stable_after` window, so a model that crashes on load does not spin forever.
The last lines of its output are kept for error messages: llama.cpp explains
most failures there and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import logging
import os
import re
import signal
import sys
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from olol.backends.llamacpp.bins import LlamaBinaryNotFound, find_llama_server
from olol.backends.llamacpp.gguf_header import read_gguf_header
from olol.errors import BackendUnavailable
from olol.lifecycle import stop_process

__all__ = ["LlamaServerConfig", "LlamaServerProcess", "builtin_chat_template", "pooling_for", "sliding_window"]

log = logging.getLogger(__name__)

# llama.cpp logs every buffer it allocates ("CPU_Mapped model buffer size = 36.00 MiB", "CUDA0 KV buffer
# size = ..."): the only honest account of what a loaded model holds, and where.
_BUFFER = re.compile(r"(?P<device>[\w.\-]+)\s+(?:model|KV|compute|output|RS)\s+buffer size\s*=\s*(?P<mib>[\d.]+) MiB")
_UBATCH = 512  # llama-server's default n_ubatch
_INFO = 3  # llama.cpp's -lv level that logs the "listening on" line
_LISTENING = re.compile(r"listening on https?://(?P<host>\[[^\]]+\]|[^:\s]+):(?P<port>\d+)")


@dataclass(frozen=True)
class LlamaServerConfig:
    model_path: Path
    alias: str | None = None  # the name llama-server reports (`--alias`)
    ctx_size: int = 2048  # tokens of context PER SLOT: `-c` gets ctx_size x parallel (see argv)
    threads: int | None = None  # None: llama.cpp's default (all cores)
    # Slots (requests served at once). Each gets its own ctx_size tokens, as each of Ollama's parallel
    # requests gets its own num_ctx; llama-server's auto mode would share one ctx_size among 4.
    parallel: int = 4
    flash_attention: bool = False  # `-fa on` (else off: llama.cpp's "auto" would change with the build)
    kv_cache_type: str = "f16"  # `-ctk/-ctv`; quantized types need flash attention (as in Ollama)
    numa: bool = False  # `--numa distribute`
    mlock: bool = False  # `--load-mode mmap+mlock` (this llama.cpp's spelling of the old --mlock): weights stay in RAM
    verbosity: int | None = None  # `-lv N` (0 generic .. 4 debug); None: llama.cpp's default (3)
    embeddings: bool = True
    pooling: str | None = None  # None: the model's own, or "mean" if it has none (see pooling_for)
    # None: the model's own; else the name of one of llama.cpp's built-in templates (its non-Jinja engine).
    chat_template: str | None = None
    # Keep the whole KV cache of sliding-window layers, so a prompt that shares only a prefix with the
    # cached one (the next question under the same system prompt) reuses it; None: on for SWA models.
    swa_full: bool | None = None
    metrics: bool = True
    host: str = "127.0.0.1"
    port: int = 0  # 0: let the kernel pick (read back from the log)
    extra_args: tuple[str, ...] = ()
    binary: Path | None = None  # None: `olol.backends.llamacpp.find_llama_server()`
    env: Mapping[str, str] = field(default_factory=dict)
    ready_timeout: float = 120.0
    max_restarts: int = 5
    restart_backoff: float = 0.5
    max_backoff: float = 10.0
    stable_after: float = 60.0  # a run at least this long resets the restart budget
    stop_timeout: float = 10.0
    log_lines: int = 200

    @property
    def total_ctx(self) -> int:
        """`-c`: llama.cpp's context is the sum over slots."""
        return self.ctx_size * max(1, self.parallel)

    def argv(self, binary: Path, port: int) -> list[str]:
        """The one place llama-server's command line is built (every setting that reaches the engine)."""
        args = [str(binary), "-m", str(self.model_path), "-c", str(self.total_ctx)]
        args += ["--host", self.host, "--port", str(port)]
        args += ["--parallel", str(max(1, self.parallel))]
        args += ["-fa", "on" if self.flash_attention else "off"]
        if self.kv_cache_type != "f16":
            args += ["-ctk", self.kv_cache_type, "-ctv", self.kv_cache_type]
        if self.numa:
            args += ["--numa", "distribute"]
        if self.mlock:
            args += ["--load-mode", "mmap+mlock"]
        if self.verbosity is not None:
            # With --port 0 the port is read back from llama-server's "listening on" line, which it logs at
            # info level (3): a quieter level would hide it and the server would never be found ready.
            args += ["-lv", str(max(self.verbosity, _INFO) if port == 0 else self.verbosity)]
        if self.threads is not None:
            args += ["-t", str(self.threads)]
        if self.alias:
            args += ["--alias", self.alias]
        if self.embeddings:
            args.append("--embeddings")
            if self.pooling:
                args += ["--pooling", self.pooling]
            slots = max(1, self.parallel)
            if _UBATCH % slots:
                # With embeddings llama-server sets n_batch = n_ubatch (512), and its graph reserve splits that
                # evenly over the slots: 3 or 6 slots abort at load (GGML_ASSERT ggml_can_mul_mat). A batch the
                # slot count divides loads.
                ubatch = _UBATCH - _UBATCH % slots
                args += ["-b", str(ubatch), "-ub", str(ubatch)]
        if self.metrics:
            args.append("--metrics")
        if self.chat_template:
            # With Jinja on (llama-server's default) the value would be taken as template source, not a name.
            args += ["--no-jinja", "--chat-template", self.chat_template]
        if self.swa_full:
            args.append("--swa-full")
        return args + list(self.extra_args)


def pooling_for(model_path: Path) -> str | None:
    """The `--pooling` a model needs for /v1/embeddings: None if it names its own.

    Chat models carry no pooling type, and llama-server's default for them
    ("none") cannot answer /v1/embeddings; mean pooling is the neutral choice.
    """
    try:
        fields = read_gguf_header(model_path).fields
    except (ValueError, OSError):
        return None  # not a readable GGUF: llama-server will say what is wrong with it
    return None if f"{fields.get('general.architecture', '')}.pooling_type" in fields else "mean"


# Model families whose base models ship without a chat template, and llama.cpp's built-in one for them.
_BUILTIN_TEMPLATES = {"gemma": "gemma", "gemma2": "gemma", "gemma3": "gemma"}


def sliding_window(model_path: Path) -> bool:
    """Whether the GGUF's attention uses a sliding window (Gemma 2/3, ...), whose cache `--swa-full` keeps whole.

    Measured on Gemma 3 270M: without it, a 243-token prompt sharing its first 236 tokens with the
    cached one reused none of them (cache_n 0, 3.7 s); with it, cache_n 236 and 0.2-0.27 s.
    """
    try:
        fields = read_gguf_header(model_path).fields
    except (ValueError, OSError):
        return False
    return f"{fields.get('general.architecture', '')}.attention.sliding_window" in fields


def builtin_chat_template(model_path: Path) -> str | None:
    """llama.cpp's built-in `--chat-template` for a GGUF that has none of its own (e.g. Gemma base models)."""
    try:
        fields = read_gguf_header(model_path).fields
    except (ValueError, OSError):
        return None
    if "tokenizer.chat_template" in fields:
        return None
    return _BUILTIN_TEMPLATES.get(str(fields.get("general.architecture", "")))


def _find_prctl() -> Any:
    if sys.platform != "linux":
        return None
    try:
        return ctypes.CDLL(None).prctl
    except (OSError, AttributeError):
        return None


# Resolved here, in the parent: the child must not dlopen between fork and exec
# (another thread of ours may hold the loader lock at fork time).
_PRCTL = _find_prctl()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # If the Python process is SIGKILLed, its children would otherwise live on,
    # each holding a model in memory; the kernel sends them SIGTERM instead.
    _PRCTL(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


class LlamaServerProcess:
    """One supervised llama-server. `await start()`, then use `url`; `await close()`."""

    def __init__(self, config: LlamaServerConfig) -> None:
        self.config = config
        self.restarts = 0  # successful restarts after the first start
        self._proc: asyncio.subprocess.Process | None = None
        self._port: int | None = None
        self._started_at = 0.0
        self._log: deque[str] = deque(maxlen=config.log_lines)
        self._reader: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._gave_up: BackendUnavailable | None = None
        self._state_changed = asyncio.Event()  # set on ready or give-up, to wake waiters
        self._closing = False
        self._failures = 0
        self._buffers: dict[str, float] = {}  # device -> MiB allocated, from this run's log

    # ------------------------------------------------------------------ state
    def memory(self) -> tuple[int, int]:
        """(bytes in all, bytes in GPU memory) the running server allocated, as its log reported them."""
        total = sum(self._buffers.values())
        vram = sum(mib for device, mib in self._buffers.items() if not device.upper().startswith("CPU"))
        return int(total * (1 << 20)), int(vram * (1 << 20))

    @property
    def url(self) -> str:
        if self._port is None:
            raise BackendUnavailable("llama-server is not running")
        host = self.config.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"  # a wildcard bind is reachable on loopback
        elif ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self._port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(list(self._log)[-lines:])

    def _unavailable(self, what: str) -> BackendUnavailable:
        tail = self.log_tail(15)
        return BackendUnavailable(f"{what}" + (f"; llama-server log tail:\n{tail}" if tail else ""))

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Launch and wait until ready. Idempotent; raises BackendUnavailable on failure."""
        if self._supervisor is not None and not self._supervisor.done():
            await self.wait_ready()
            return
        self._closing = False
        self._gave_up = None
        self._failures = 0
        config = self.config
        if config.embeddings and config.pooling is None and config.model_path.is_file():
            pooling = await asyncio.to_thread(pooling_for, config.model_path)
            self.config = config = dataclasses.replace(config, pooling=pooling)
        if config.chat_template is None and config.model_path.is_file():
            template = await asyncio.to_thread(builtin_chat_template, config.model_path)
            self.config = config = dataclasses.replace(config, chat_template=template)
        if config.swa_full is None and config.model_path.is_file():
            self.config = dataclasses.replace(config, swa_full=await asyncio.to_thread(sliding_window,
                                                                                    config.model_path))
        try:
            await self._spawn()
        except BaseException:
            await self._terminate()
            raise
        self._supervisor = asyncio.create_task(self._supervise(), name="llama-server-supervisor")

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Return once the server answers /health; raise BackendUnavailable if it will not."""
        deadline = time.monotonic() + (self.config.ready_timeout if timeout is None else timeout)
        while not self._ready.is_set():
            if self._gave_up is not None:
                raise self._gave_up
            if self._supervisor is None or self._closing:
                raise BackendUnavailable("llama-server is not running")
            self._state_changed.clear()
            if self._ready.is_set() or self._gave_up is not None:
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._unavailable("llama-server did not become ready in time")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._state_changed.wait(), remaining)

    async def close(self) -> None:
        """Stop the server: SIGTERM, then SIGKILL after `stop_timeout`. Idempotent."""
        self._closing = True
        self._ready.clear()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        await self._terminate()
        self._state_changed.set()

    async def kill(self) -> None:
        """SIGKILL the server without stopping supervision (tests use it to simulate a crash)."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()

    # ------------------------------------------------------------------ internals
    async def _spawn(self) -> None:
        self._port = None
        self._buffers = {}
        self._proc = None  # None after a failed spawn means nothing was launched
        self._ready.clear()
        try:
            binary = find_llama_server(self.config.binary)
        except LlamaBinaryNotFound as exc:
            raise BackendUnavailable(str(exc)) from exc
        if not self.config.model_path.is_file():
            raise BackendUnavailable(f"model file not found: {self.config.model_path}")
        argv = self.config.argv(binary, self.config.port)
        log.info("starting %s", " ".join(argv))
        self._proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, **self.config.env},
            start_new_session=True,  # a Ctrl-C at the terminal must not kill it before we stop it cleanly
            preexec_fn=_die_with_parent if _PRCTL is not None else None,
        )
        self._started_at = time.monotonic()
        self._reader = asyncio.create_task(self._read_output(self._proc), name="llama-server-log")
        await self._wait_healthy(self._proc)
        self._ready.set()
        self._state_changed.set()
        log.info("llama-server ready at %s (pid %d)", self.url, self._proc.pid)

    async def _read_output(self, proc: asyncio.subprocess.Process) -> None:
        # Chunked reads, not readline(): one overlong line must not stall the pipe
        # (a full pipe would block llama-server's logging, and with it the server).
        assert proc.stdout is not None
        pending = b""
        while chunk := await proc.stdout.read(65536):
            *lines, pending = (pending + chunk).split(b"\n")
            for raw in lines:
                self._note_line(raw.decode("utf-8", "replace").rstrip("\r"))
            pending = pending[-65536:]
        if pending:
            self._note_line(pending.decode("utf-8", "replace"))

    def _note_line(self, line: str) -> None:
        self._log.append(line)
        if (buffer := _BUFFER.search(line)) is not None:
            device = buffer["device"]
            self._buffers[device] = self._buffers.get(device, 0.0) + float(buffer["mib"])
        if self._port is None and (match := _LISTENING.search(line)):
            self._port = int(match["port"])

    async def _wait_healthy(self, proc: asyncio.subprocess.Process) -> None:
        deadline = time.monotonic() + self.config.ready_timeout
        exited = asyncio.ensure_future(proc.wait())
        delay = 0.02
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0)) as session:
                while True:
                    if exited.done():
                        await self._drain_log()
                        raise self._unavailable(f"llama-server exited with code {proc.returncode} during startup")
                    if self._port is not None and await self._health_ok(session):
                        return
                    if time.monotonic() > deadline:
                        raise self._unavailable(
                            f"llama-server not ready after {self.config.ready_timeout:g}s (load timeout)"
                        )
                    # Wake early if the process dies; otherwise poll again with backoff.
                    await asyncio.wait({exited}, timeout=delay)
                    delay = min(delay * 1.5, 0.25)
        finally:
            exited.cancel()

    async def _health_ok(self, session: aiohttp.ClientSession) -> bool:
        try:
            async with session.get(self.url + "/health") as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def _drain_log(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._reader), 1.0)

    async def _supervise(self) -> None:
        try:
            await self._supervise_loop()
        except Exception as exc:  # never leave waiters hanging on a dead supervisor
            log.exception("llama-server supervisor failed")
            self._gave_up = BackendUnavailable(f"llama-server supervisor failed: {exc}")
            self._state_changed.set()

    async def _supervise_loop(self) -> None:
        while not self._closing:
            proc = self._proc
            assert proc is not None
            code = await proc.wait()
            self._ready.clear()
            if self._closing:
                return
            await self._drain_log()
            lived = time.monotonic() - self._started_at
            log.warning("llama-server (pid %d) exited with code %s after %.1fs", proc.pid, code, lived)
            if lived >= self.config.stable_after:
                self._failures = 0
            self._failures += 1
            if self._failures > self.config.max_restarts:
                self._gave_up = self._unavailable(
                    f"llama-server exited with code {code}; gave up after {self.config.max_restarts} restarts"
                )
                self._state_changed.set()
                return
            backoff = self.config.restart_backoff * 2 ** (self._failures - 1)
            await asyncio.sleep(min(backoff, self.config.max_backoff))
            try:
                await self._spawn()
            except BackendUnavailable as exc:
                log.warning("llama-server restart failed: %s", exc.message)
                if self._proc is None or self._proc.returncode is None:
                    await self._terminate()  # e.g. hung while loading: count it and retry
                if self._proc is None:  # nothing was launched at all (binary or model gone)
                    self._gave_up = exc
                    self._state_changed.set()
                    return
                continue
            self.restarts += 1

    async def _terminate(self) -> None:
        proc = self._proc
        await stop_process(
            proc, self.config.stop_timeout,
            on_kill=lambda: log.warning("llama-server (pid %d) ignored SIGTERM; killing it", proc.pid if proc else 0),
        )  # fmt: skip
        if self._reader is not None:
            await self._drain_log()
            self._reader.cancel()
            self._reader = None
