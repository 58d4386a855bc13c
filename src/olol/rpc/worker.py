"""Launch, supervise and probe the local `ggml-rpc-server` that `olol rpc-server` fronts.

The worker is bound to loopback on a private port by default: it has no
authentication, so only OLOL's tunnel (or, with `--transport direct`, a
deliberately wider bind) reaches it. On Linux that loopback is the worker's
own, in a network namespace made for it (`olol.rpc.isolation`), so no other
local user can reach it or hold its one connection; where no
namespace can be made it falls back to the host's 127.0.0.1 with a warning.
It serves one client connection at a time and frees everything when that
connection closes, which shapes this module:

* probes (HELLO, DEVICE_COUNT, GET_DEVICE_MEMORY, the speed test) run only
  while no tunnel session holds the worker, under a lock, with a deadline, and
  their result is cached for `capabilities`;
* a worker that dies is restarted on the same port (llama-server in direct
  mode knows it by that port) with exponential backoff, then probed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import socket
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from olol.backends.llamacpp.bins import find_rpc_server
from olol.lifecycle import cancel_and_wait, stop_process
from olol.rpc.devices import list_devices, resolve_devices, worker_env
from olol.rpc.ggml_client import GgmlError
from olol.rpc.isolation import Gate, start_gate
from olol.rpc.probe import DEFAULT_MATRIX_BYTES, WorkerProbe, probe_worker

__all__ = [
    "GgmlWorker",
    "WorkerConfig",
    "WorkerUnavailable",
    "free_port",
    "isolation_wanted",
    "spawn_worker_process",
]

log = logging.getLogger(__name__)

_SAVED = re.compile(r"saved to '(?P<path>[^']+)'")


class WorkerUnavailable(RuntimeError):
    pass


def _die_with_parent_prefix() -> list[str]:
    """`setpriv --pdeathsig TERM --`, where available: a SIGKILLed rpc-server must not leave an
    unauthenticated worker listening. Not a preexec_fn: forking with one while gRPC's threads run
    crashes a share of the children (gRPC's fork handlers), whereas a plain spawn uses vfork."""
    setpriv = shutil.which("setpriv") if sys.platform == "linux" else None
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


async def spawn_worker_process(
    argv: list[str], env: dict[str, str], pass_fds: tuple[int, ...] = ()
) -> asyncio.subprocess.Process:
    """Start the worker (or its namespace gate) with SIGPIPE ignored and a death signal tied to this process.

    ggml-rpc-server writes replies with plain send(): with SIGPIPE at its default, a client that
    hangs up at the wrong moment kills the worker instead of ending its session with EPIPE.
    `restore_signals=False` keeps Python's ignored SIGPIPE under asyncio's own loop, but uvloop
    (the rpc-server's loop where installed) resets every signal in the child, so the shell
    sets it again (`trap '' PIPE` is inherited across the exec).
    """
    return await asyncio.create_subprocess_exec(
        *_die_with_parent_prefix(),
        "/bin/sh",
        "-c",
        'trap "" PIPE; exec "$@"',
        "ggml-worker",
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        start_new_session=True,  # Ctrl-C at a terminal reaches us; we stop the worker in order
        restore_signals=False,
        pass_fds=pass_fds,
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class WorkerConfig:
    binary: Path | None = None  # None: olol.backends.llamacpp.find_rpc_server()
    host: str = "127.0.0.1"  # where the ggml worker listens; loopback unless --transport direct needs more
    port: int = 0  # 0: a free port, chosen once and kept across restarts
    threads: int | None = None
    device: str = "auto"  # auto, cpu, cuda, rocm, metal, vulkan, or ggml device names
    cache_dir: Path | None = None  # the ggml `-c` tensor cache ($LLAMA_CACHE/rpc); None: no cache
    probe_timeout: float = 10.0
    measure_speed: bool = True
    matrix_bytes: int = DEFAULT_MATRIX_BYTES
    start_timeout: float = 30.0
    max_restarts: int = 20
    restart_backoff: float = 0.25
    max_backoff: float = 5.0
    stable_after: float = 60.0  # a run this long resets the restart budget
    log_lines: int = 200
    #: Linux: a loopback worker runs in a network namespace of its own, reachable only through this process
    #: (off: the host's 127.0.0.1, which same-host `--transport direct` coordinators need). A wider bind is a
    #: deliberate exposure and is never isolated.
    isolate: bool = True


def isolation_wanted(config: WorkerConfig) -> bool:
    """Linux, asked for, and a loopback bind (anything wider is a deliberate exposure)."""
    loopback = config.host == "localhost" or config.host.startswith("127.")
    return config.isolate and loopback and sys.platform == "linux"


@dataclass
class _State:
    probe: WorkerProbe | None = None
    sessions: int = 0
    restarts: int = 0
    saved: deque[str] = field(default_factory=lambda: deque(maxlen=4096))


class GgmlWorker:
    """One supervised ggml-rpc-server. `await start()`; `endpoint`; `await close()`."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.binary = find_rpc_server(config.binary)
        self.device_names: list[str] = []
        self._device_args: list[str] = []
        self._port = config.port
        self._proc: asyncio.subprocess.Process | None = None
        self._state = _State()
        self._log: deque[str] = deque(maxlen=config.log_lines)
        self._lock = asyncio.Lock()  # probes and seeding: one OLOL session on the worker at a time
        self._supervisor: asyncio.Task[None] | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._closing = False
        self._restarting = False  # between a crash and the restarted worker's first probe
        self._started_at = 0.0
        self._failures = 0
        self._gate: Gate | None = None
        # None: not tried yet; then whether the worker runs in its own namespace (decided once, at start).
        self._isolated: bool | None = None if isolation_wanted(config) else False

    # -- state ---------------------------------------------------------------

    @property
    def host(self) -> str:
        return "127.0.0.1" if self.config.host in ("0.0.0.0", "", "::") else self.config.host

    @property
    def port(self) -> int:
        return self._port

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self._port}"

    @property
    def isolated(self) -> bool:
        """Whether the worker runs in a network namespace of its own (its endpoint is then its own loopback)."""
        return bool(self._isolated)

    @property
    def pid(self) -> int | None:
        """The ggml-rpc-server's pid (the gate's child when isolated)."""
        if self._gate is not None:
            return self._gate.worker_pid
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def probe(self) -> WorkerProbe | None:
        return self._state.probe

    @property
    def busy(self) -> bool:
        return self._state.sessions > 0

    @property
    def restarts(self) -> int:
        return self._state.restarts

    @property
    def lock(self) -> asyncio.Lock:
        """Held by OLOL's own sessions on the worker (probe, seeding)."""
        return self._lock

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(list(self._log)[-lines:])

    def take_saved(self) -> list[str]:
        """Cache files the worker reported writing since the last call (for seeding)."""
        saved = list(self._state.saved)
        self._state.saved.clear()
        return saved

    @contextlib.contextmanager
    def session(self) -> Iterator[GgmlWorker]:
        """Mark the worker held by a client (a tunnel): probes wait until it is released."""
        self._state.sessions += 1
        try:
            yield self
        finally:
            self._state.sessions -= 1

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        available = await asyncio.to_thread(list_devices, self.binary)
        self._device_args, self.device_names = resolve_devices(self.config.device, available)
        if not self._port:
            self._port = free_port(self.config.host if self.config.host not in ("", "::") else "127.0.0.1")
        await self._spawn()
        self._supervisor = asyncio.create_task(self._supervise(), name="ggml-worker-supervisor")

    async def close(self) -> None:
        self._closing = True
        await cancel_and_wait(self._supervisor)
        await self._terminate()

    async def kill(self) -> None:
        """SIGKILL the worker, leaving supervision on (tests simulate a crash with it)."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()  # the gate, when isolated: its worker dies with it

    async def open_socket(self) -> socket.socket:
        """A connected, non-blocking socket to the worker, for the event loop (a tunnel session)."""
        if self._gate is not None:
            return await self._gate.connect()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await asyncio.get_running_loop().sock_connect(sock, (self.host, self._port))
        except BaseException:
            sock.close()
            raise
        return sock

    def connect_blocking(self, timeout: float) -> socket.socket:
        """A connected, blocking socket to the worker, for OLOL's own sessions (probes, seeding) in threads.
        Raises GgmlError."""
        gate = self._gate
        try:
            if gate is not None:
                return gate.connect_blocking(timeout)
            return socket.create_connection((self.host, self._port), timeout=timeout)
        except OSError as exc:
            raise GgmlError(f"cannot connect to ggml worker {self.endpoint}: {exc}") from exc

    async def wait_running(self, timeout: float) -> bool:
        """Whether the worker runs (and answered its probe), waiting up to `timeout` for a restart."""
        deadline = time.monotonic() + timeout
        while not (self.running and not self._restarting):
            if self._closing or time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def refresh(self, *, measure: bool | None = None) -> WorkerProbe | None:
        """Probe again if no client holds the worker; return the (possibly cached) probe."""
        if self.busy or not self.running:
            return self._state.probe
        async with self._lock:
            if self.busy:
                return self._state.probe
            keep_speed = self._state.probe.speed if self._state.probe else 0.0
            want = self.config.measure_speed and not keep_speed if measure is None else measure
            try:
                probe = await asyncio.to_thread(self._probe_once, want)
            except GgmlError as exc:
                log.warning("probing ggml worker %s failed: %s", self.endpoint, exc)
                return self._state.probe
            if not want and keep_speed:
                probe = WorkerProbe(probe.version, probe.devices, keep_speed, probe.probed_at)
            self._state.probe = probe
            return probe

    # -- internals -----------------------------------------------------------

    def _argv(self) -> list[str]:
        argv = [str(self.binary), "-H", self.config.host, "-p", str(self._port)]
        if self.config.threads:
            argv += ["-t", str(self.config.threads)]
        if self._device_args:
            argv += ["-d", ",".join(self._device_args)]
        if self.config.cache_dir is not None:
            argv.append("-c")
        return argv

    def _probe_once(self, measure: bool) -> WorkerProbe:
        return probe_worker(
            self.host,
            self._port,
            timeout=self.config.probe_timeout,
            measure=measure,
            matrix_bytes=self.config.matrix_bytes,
            device_names=self.device_names,
            sock=self.connect_blocking(self.config.probe_timeout),
        )

    async def _spawn(self) -> None:
        env = worker_env(self.binary)
        if self.config.cache_dir is not None:
            self.config.cache_dir.mkdir(parents=True, exist_ok=True)
            env["LLAMA_CACHE"] = str(self.config.cache_dir)  # the worker caches under $LLAMA_CACHE/rpc
        argv = self._argv()
        where = " in its own network namespace" if self._isolated is not False else ""
        log.info("starting %s%s", " ".join(argv), where)
        self._close_gate()
        if self._isolated is False:
            self._proc = await spawn_worker_process(argv, env)
        else:
            self._proc, self._gate, why = await start_gate(
                argv, env, self._port, spawn_worker_process, self.config.start_timeout
            )
            if self._gate is None:
                if self._isolated:  # it worked before: a restart must not quietly expose the worker
                    raise WorkerUnavailable(f"the ggml worker's network namespace failed: {why}")
                log.warning(
                    "ggml worker NOT isolated (%s): it listens on the host's %s, where any local user can "
                    "connect to it or hold its one connection; --no-worker-isolation says this is intended",
                    why, self.endpoint,
                )  # fmt: skip
                self._isolated = False
                self._proc = await spawn_worker_process(argv, env)
            else:
                self._isolated = True
        self._started_at = time.monotonic()
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._readers = [asyncio.create_task(self._read(s)) for s in (self._proc.stdout, self._proc.stderr)]
        await self._wait_ready(self._proc)

    async def _wait_ready(self, proc: asyncio.subprocess.Process) -> None:
        """Ready = the first probe succeeds (a refused connect does not disturb the worker)."""
        deadline = time.monotonic() + self.config.start_timeout
        delay = 0.02
        measure = self.config.measure_speed
        async with self._lock:
            while True:
                if proc.returncode is not None:
                    raise WorkerUnavailable(f"ggml-rpc-server exited with code {proc.returncode}:\n{self.log_tail()}")
                try:
                    self._state.probe = await asyncio.to_thread(self._probe_once, measure)
                    log.info("ggml worker ready at %s: %s", self.endpoint, self._state.probe)
                    return
                except GgmlError as exc:
                    if time.monotonic() > deadline:
                        raise WorkerUnavailable(f"ggml-rpc-server not ready: {exc}\n{self.log_tail()}") from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            text = line.decode("utf-8", "replace").rstrip()
            self._log.append(text)
            if match := _SAVED.search(text):
                self._state.saved.append(Path(match["path"]).name)

    async def _supervise(self) -> None:
        while not self._closing:
            proc = self._proc
            assert proc is not None
            code = await proc.wait()
            if self._closing:
                return
            self._restarting = True
            lived = time.monotonic() - self._started_at
            log.warning("ggml-rpc-server (pid %d) exited with code %s after %.1fs", proc.pid, code, lived)
            self._failures = 0 if lived >= self.config.stable_after else self._failures
            self._failures += 1
            if self._failures > self.config.max_restarts:
                log.error("ggml-rpc-server keeps dying; gave up after %d restarts", self.config.max_restarts)
                return
            backoff = self.config.restart_backoff * 2 ** (self._failures - 1)
            await asyncio.sleep(min(backoff, self.config.max_backoff))
            try:
                await self._spawn()
            except (WorkerUnavailable, OSError) as exc:
                log.warning("restarting ggml-rpc-server failed: %s", exc)
                await self._terminate()
                continue
            self._restarting = False
            self._state.restarts += 1

    def _close_gate(self) -> None:
        if self._gate is not None:
            self._gate.close()
            self._gate = None

    async def _terminate(self) -> None:
        await stop_process(self._proc, 5.0)
        self._close_gate()
        for reader in self._readers:
            reader.cancel()
        self._readers = []
