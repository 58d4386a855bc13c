"""Running the proxy: `start_proxy` for tests and embedding, `serve` for the CLI."""

from __future__ import annotations

import gc
import logging
import socket
from dataclasses import dataclass

from aiohttp import web

from olol import eventloop
from olol.cluster.quant_matcher import QuantMatcher
from olol.lifecycle import wait_for_signal
from olol.proxy.app import build_app
from olol.proxy.config import ProxyConfig
from olol.proxy.context import BackendFactory, ProxyContext
from olol.proxy.ui import ui_url
from olol.security import connections
from olol.security.http import https_context, scheme, warn_if_open_http

__all__ = ["RunningProxy", "serve", "start_proxy"]

log = logging.getLogger(__name__)


@dataclass
class RunningProxy:
    config: ProxyConfig
    context: ProxyContext
    runner: web.AppRunner
    port: int

    @property
    def url(self) -> str:
        host = self.config.host
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        return f"{scheme(self.config.security)}://{host}:{self.port}"

    async def stop(self) -> None:
        """Stop listening, let in-flight requests finish (up to `shutdown_timeout`), close backends."""
        await self.runner.cleanup()
        await self.context.stop()


async def start_proxy(config: ProxyConfig, *, backend_factory: BackendFactory | None = None,
                      quant: QuantMatcher | None = None) -> RunningProxy:
    """Start serving in the running loop; `config.port == 0` takes a free port (see `.port`)."""
    context = ProxyContext.build(config, backend_factory, quant)
    await context.start()
    # handler_cancellation: a client that disconnects cancels its handler, which closes the upstream call.
    runner = web.AppRunner(build_app(context), handler_cancellation=True,
                           shutdown_timeout=config.shutdown_timeout, access_log=None,
                           **config.security.limits.server_kwargs())
    try:
        await runner.setup()
        connections.install(runner.server, config.security.limits.connection_cap())
        site = web.TCPSite(runner, config.host, config.port, ssl_context=https_context(config.security))
        await site.start()
    except BaseException:
        await runner.cleanup()
        await context.stop()
        raise
    port = int(runner.addresses[0][1]) if runner.addresses else config.port
    log.info("olol proxy on %s:%d over %d hosts", config.host, port, len(config.servers))
    warn_if_open_http(log, config.host, port, config.security)
    return RunningProxy(config, context, runner, port)


def check_port_free(host: str, port: int) -> None:
    """Raise at once when another process holds the port, before minutes of probing hosts."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds: TIME_WAIT is no owner
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc} "
                          "(another proxy or Ollama there? see --port)") from None


async def _serve(config: ProxyConfig) -> None:
    check_port_free(config.host, config.port)
    proxy = await start_proxy(config)
    # Everything built so far lives as long as the process: moved out of the collector's sight, a full
    # collection no longer walks it (a pause of tens of ms at load, and ~3% of the CPU per request).
    gc.freeze()
    # A plain line on stdout that scripts and tests wait for instead of sleeping.
    print(f"READY {config.host}:{proxy.port}", flush=True)
    print(f"dashboard: {ui_url(proxy.url)}", flush=True)
    try:
        await wait_for_signal()
        log.info("shutting down: finishing in-flight requests")
    finally:
        await proxy.stop()


def serve(config: ProxyConfig) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully. Blocks."""
    eventloop.run(_serve(config))  # on uvloop where it is installed
