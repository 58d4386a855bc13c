"""The coordinator: plan a model over rpc-servers, run llama-server on them, re-plan when one fails.

One "generation" is one llama-server process with one plan. It ends when
llama-server exits (llama.cpp aborts when an RPC connection breaks), when a
tunnel's remote end goes away while serving, or when a worker stops answering
its health check; the coordinator then asks every configured worker for its
capabilities again, plans over those that answer and starts the next
generation, retrying with backoff until it can. Requests arriving meanwhile
wait for `wait_ready` (see `olol.split.front`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from olol.backends.llamacpp.process import LlamaServerConfig, LlamaServerProcess
from olol.errors import BackendUnavailable
from olol.security.tls import TlsFiles
from olol.split.planner import DEFAULT_HOP_COST, DistPlan, LayerPlanner, PlanError, check_objective
from olol.split.profile import ModelProfile
from olol.split.tunnel import LocalTunnel
from olol.split.workers import RemoteWorker, WorkerInfo, gather_infos

__all__ = ["Coordinator", "DistConfig"]

log = logging.getLogger(__name__)

# tunnel: the rpc-server's data port when it has one (else gRPC); grpc: the tunnel in gRPC messages only;
# direct: llama-server dials the ggml workers (trusted networks).
TRANSPORTS = ("tunnel", "grpc", "direct")
# Seconds a worker's round trip adds to each token, by transport, for the latency objective: a LAN
# exchange, plus what each tunnel measured per token and worker (BENCHMARKS.md, "Decode tokens/s").
# They only tip the balance for a worker whose share would save about that much.
HOP_COSTS = {"direct": DEFAULT_HOP_COST, "tunnel": DEFAULT_HOP_COST + 2e-4, "grpc": DEFAULT_HOP_COST + 5e-4}


@dataclass
class DistConfig:
    servers: list[str]
    model: Path
    alias: str | None = None
    transport: str = "tunnel"
    token: str | None = None
    tls: TlsFiles = field(default_factory=TlsFiles)
    ctx_size: int | None = None  # None: the workers' advised context window, else 2048
    kv_type: str | None = None  # None: the workers' advice (all alike), else f16
    flash_attention: bool | None = None  # None: on if every worker advises it
    threads: int | None = None
    parallel: int | None = None
    margin: float = 0.1
    # "latency": least time per token of one request (llama.cpp runs the stages in turn); "balanced": least
    # slowest stage, for when stages overlap. See olol.split.planner.
    objective: str = "latency"
    embeddings: bool = False
    llama_server_bin: Path | None = None
    extra_args: tuple[str, ...] = ()
    verbosity: int | None = None  # llama-server -lv (5 reports the layer of every device)
    ready_timeout: float = 600.0
    capabilities_timeout: float = 30.0
    health_interval: float = 2.0
    retry_backoff: float = 0.5
    max_backoff: float = 10.0
    log_lines: int = 400

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, not {self.transport!r}")
        check_objective(self.objective)


class Coordinator:
    def __init__(self, config: DistConfig, planner: LayerPlanner | None = None) -> None:
        self.config = config
        self.planner = planner or LayerPlanner(
            config.margin, objective=config.objective, hop_cost=HOP_COSTS[config.transport]
        )
        self.workers = [RemoteWorker(a, token=config.token, tls=config.tls) for a in config.servers]
        self.tunnels: dict[str, LocalTunnel] = {}
        self.plan: DistPlan | None = None
        self.endpoints: dict[str, str] = {}  # rpc-server address -> what llama-server dials for it
        self.process: LlamaServerProcess | None = None
        self.generation = 0
        self.failures: list[str] = []  # why each generation ended
        self._ready = asyncio.Event()
        self._recovering: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._closing = False
        self._missed: dict[str, int] = {}  # health checks missed in a row, by worker

    @property
    def url(self) -> str:
        if self.process is None or not self._ready.is_set():
            raise BackendUnavailable("the distributed model is not being served right now (re-planning)")
        return self.process.url

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Plan and launch the first generation; raise if that fails (PlanError, BackendUnavailable)."""
        try:
            await self._launch()
        except BaseException:
            await self.close()
            raise
        self._watcher = asyncio.create_task(self._watch(), name="dist-watch")

    async def close(self) -> None:
        self._closing = True
        self._ready.clear()
        for task in (self._watcher, self._recovering):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._stop_generation()
        for tunnel in self.tunnels.values():
            await tunnel.close()
        for worker in self.workers:
            await worker.close()

    async def wait_ready(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            raise BackendUnavailable(f"distributed model not served again within {timeout:.0f}s") from None

    async def plan_only(self) -> DistPlan:
        plan, _, _ = await self._plan()
        return plan

    def replan(self, reason: str) -> None:
        """End the current generation and start another (idempotent while one is being started)."""
        if self._closing or (self._recovering is not None and not self._recovering.done()):
            return
        log.warning("re-planning: %s", reason)
        self.failures.append(reason)
        self._ready.clear()
        self._recovering = asyncio.create_task(self._recover(), name="dist-recover")

    # -- internals -----------------------------------------------------------

    async def _devices(self) -> tuple[list[WorkerInfo], list[RemoteWorker]]:
        devices, errors = await gather_infos(self.workers, refresh=True, timeout=self.config.capabilities_timeout)
        for address, exc in errors.items():
            log.warning("rpc-server %s left out of the plan: %s", address, _describe(exc))
        return devices, [w for w in self.workers if w.address not in errors]

    def _advice(self, answered: list[RemoteWorker]) -> tuple[int, str, bool]:
        caps = [w.last for w in answered if w.last is not None]
        cfg = self.config
        windows = [c.context_window for c in caps if c.context_window]
        ctx = cfg.ctx_size or (min(windows) if windows else 2048)
        kinds = {c.quantize for c in caps}
        kv = cfg.kv_type or (kinds.pop() if len(kinds) == 1 and "" not in kinds else "f16")
        flash = (
            cfg.flash_attention
            if cfg.flash_attention is not None
            else bool(caps) and all(c.flash_attention for c in caps)
        )
        return ctx, kv, flash or kv not in ("f16", "f32", "bf16")  # llama.cpp needs FA for a quantized V cache

    async def _plan(self) -> tuple[DistPlan, list[WorkerInfo], tuple[int, str, bool]]:
        """Ask every worker, plan over those that answered: (plan, their devices, (ctx, kv type, flash))."""
        devices, answered = await self._devices()
        ctx, kv, flash = self._advice(answered)
        profile = await asyncio.to_thread(ModelProfile.from_gguf, self.config.model, n_ctx=ctx, kv_type=kv)
        return self.planner.plan(profile, devices), devices, (ctx, kv, flash)

    async def _launch(self) -> None:
        plan, devices, (ctx, kv, flash) = await self._plan()
        endpoints = await self._endpoints(plan, devices)
        cfg = self.config
        args = plan.llama_args(endpoints)
        # The plan holds KV for `ctx` tokens in all: each slot gets its share (one slot unless --parallel).
        slots = max(1, cfg.parallel or 1)
        process = LlamaServerProcess(
            LlamaServerConfig(
                model_path=cfg.model,
                alias=cfg.alias,
                ctx_size=max(1, ctx // slots),
                threads=cfg.threads,
                parallel=slots,
                flash_attention=flash,
                kv_cache_type=kv,
                verbosity=cfg.verbosity,
                embeddings=cfg.embeddings,
                extra_args=(*args, *cfg.extra_args),
                binary=cfg.llama_server_bin,
                ready_timeout=cfg.ready_timeout,
                max_restarts=0,  # a dead llama-server means a new plan, not the same one again
                log_lines=cfg.log_lines,
            )
        )
        started = time.monotonic()
        await process.start()
        self.plan, self.process, self.endpoints = plan, process, endpoints
        self.generation += 1
        log.info(
            "generation %d: %s over %s (split %s) ready in %.1fs at %s",
            self.generation, cfg.model.name, ", ".join(plan.used_addresses),
            plan.tensor_split, time.monotonic() - started, process.url,
        )  # fmt: skip
        self._ready.set()

    async def _endpoints(self, plan: DistPlan, devices: list[WorkerInfo]) -> dict[str, str]:
        if self.config.transport == "direct":
            closed = sorted({d.address for d in devices if d.address in plan.used_addresses and not d.direct_endpoint})
            if closed:
                raise BackendUnavailable(
                    f"--transport direct: the ggml worker of {', '.join(closed)} cannot be dialled (it runs in a "
                    "network namespace of its own: start that rpc-server with --worker-host ADDRESS for other "
                    "hosts, or --no-worker-isolation for this one)"
                )
            return {d.address: d.direct_endpoint for d in devices}
        by_address = {w.address: w for w in self.workers}
        for address in plan.used_addresses:
            if address not in self.tunnels:
                data_path = "grpc" if self.config.transport == "grpc" else "stream"
                tunnel = LocalTunnel(by_address[address], on_broken=self._tunnel_broken, data_path=data_path)
                await tunnel.start()
                self.tunnels[address] = tunnel
        return {address: tunnel.endpoint for address, tunnel in self.tunnels.items()}

    def _tunnel_broken(self, address: str, why: str) -> None:
        if self._ready.is_set():
            self.replan(f"tunnel to {address} broke: {why}")

    async def _stop_generation(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            await process.close()

    async def _recover(self) -> None:
        await self._stop_generation()
        delay = self.config.retry_backoff
        while not self._closing:
            try:
                await self._launch()
                return
            except (PlanError, BackendUnavailable, OSError, ValueError) as exc:
                log.warning("no new plan yet (%s); retrying in %.1fs", _describe(exc), delay)
                await self._stop_generation()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.config.max_backoff)

    async def _watch(self) -> None:
        last_health = time.monotonic()
        while not self._closing:
            await asyncio.sleep(0.2)
            if not self._ready.is_set():
                continue
            process = self.process
            if process is not None and not process.running:
                self.replan(f"llama-server exited:\n{process.log_tail(8)}")
                continue
            if time.monotonic() - last_health >= self.config.health_interval and self.plan is not None:
                last_health = time.monotonic()
                await self._check_workers(self.plan)

    async def _check_workers(self, plan: DistPlan) -> None:
        """Re-plan when a used worker is gone (refused) or has missed two health checks in a row."""
        used = [w for w in self.workers if w.address in plan.used_addresses]
        results = await asyncio.gather(*(w.capabilities(timeout=5.0) for w in used), return_exceptions=True)
        for worker, result in zip(used, results, strict=True):
            if not isinstance(result, Exception):
                self._missed.pop(worker.address, None)
                continue
            self._missed[worker.address] = missed = self._missed.get(worker.address, 0) + 1
            gone = isinstance(result, grpc.aio.AioRpcError) and result.code() == grpc.StatusCode.UNAVAILABLE
            if (gone or missed >= 2) and self._ready.is_set():
                self.replan(f"rpc-server {worker.address} stopped answering: {_describe(result)}")
                return


def _describe(exc: BaseException) -> str:
    details = getattr(exc, "details", None)
    if callable(details):
        return f"{exc.code().name}: {details()}"  # type: ignore[attr-defined]
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
