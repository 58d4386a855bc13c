"""One benchmark host in its own process: a disk-backed Ollama stand-in and the OLOL agent in front of it.

    python -m bench._placement_host --models DIR --staging DIR [--registry URL] [--transfer-rate B/S]

Prints `READY <agent target> <ollama url>` once both listen; exits on SIGTERM. A
process per host keeps the hosts from sharing one interpreter lock, as they
share no CPU time on a real LAN either.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from olol.agent.config import AgentConfig
from olol.agent.server import AioAgent
from olol.backends.ollama.backend import OllamaBackend
from tests.placement.disk_sim import DiskOllamaSim


async def _serve(args: argparse.Namespace) -> None:
    sim = DiskOllamaSim(Path(args.models), registry_url=args.registry)
    await sim.start()
    config = AgentConfig(
        host="127.0.0.1",
        port=0,
        ollama_models=args.models,
        transfer_dir=args.staging,
        transfer_rate=args.transfer_rate,
        registry=args.registry,  # the agent downloads a seed itself, from the registry its Ollama uses
        grace=0.5,
    )
    agent = await AioAgent.start(config, OllamaBackend(sim.url))
    print(f"READY {agent.target} {sim.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await agent.stop()
    await sim.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", required=True)
    parser.add_argument("--staging", required=True)
    parser.add_argument("--registry")
    parser.add_argument("--transfer-rate", type=float)
    asyncio.run(_serve(parser.parse_args()))


if __name__ == "__main__":
    main()
