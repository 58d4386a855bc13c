"""The simulator as a separate process, for tests that kill hosts or run them elsewhere.

    python -m tests.support.ollama_sim --models llama3.2,nomic-embed-text --token-rate 50

prints `READY http://127.0.0.1:PORT` once listening and exits 0 on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from tests.support.ollama_sim._server import OllamaSim


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.support.ollama_sim", description="Ollama API simulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--models", help="comma-separated local models (default: the fixture set)")
    p.add_argument("--registry", help="comma-separated pullable models (default: a small set)")
    p.add_argument("--token-rate", type=float, default=None)
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--load-latency", type=float, default=0.0)
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("--max-queue", type=int, default=512)
    p.add_argument("--fail-after-tokens", type=int, default=None)
    p.add_argument("--die-after-tokens", type=int, default=None)
    p.add_argument("--response-tokens", type=int, default=16)
    p.add_argument("--keep-alive", default="5m")
    p.add_argument("--version", default="0.12.6")
    return p.parse_args(argv)


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [n for n in text.split(",") if n.strip()]


async def _serve(args: argparse.Namespace) -> int:
    sim = OllamaSim(
        _names(args.models),
        host=args.host,
        port=args.port,
        token_rate=args.token_rate,
        latency=args.latency,
        load_latency=args.load_latency,
        parallel=args.parallel,
        max_queue=args.max_queue,
        fail_after_tokens=args.fail_after_tokens,
        die_after_tokens=args.die_after_tokens,
        response_tokens=args.response_tokens,
        keep_alive=args.keep_alive,
        version=args.version,
        registry=_names(args.registry),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await sim.start()
    print(f"READY {sim.url}", flush=True)  # the launcher waits for this line, not for a timer
    await stop.wait()
    await sim.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(_serve(_parse_args(argv)))
