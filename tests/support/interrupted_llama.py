"""A llama.cpp host that breaks once, mid-stream, at an exact point: for the resume tests on real llama.cpp.

Timing a kill from the client's side races a tiny model that writes hundreds of tokens a second, so
the host itself breaks after `after` chunks of its next armed stream:

* "kill": its llama-server gets SIGKILL (the supervisor then restarts it);
* "pause": the stream stops sending, so a test can SIGKILL the whole agent process at that point.

Run as a process (an agent to kill): `python -m tests.support.interrupted_llama --model M --bin B --after N`
prints `READY <host:port>` and `PAUSED` once the armed stream has stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from olol.backends.llamacpp.backend import LlamaCppBackend
from olol.cluster.backend import JSON

__all__ = ["InterruptedLlama"]


class InterruptedLlama(LlamaCppBackend):
    def __init__(self, *, after: int, how: str = "kill", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.after = after
        self.how = how
        self.armed = False
        self.broke = asyncio.Event()

    def generate(self, request: JSON) -> AsyncIterator[JSON]:
        return self._interrupt(super().generate(request))

    def chat(self, request: JSON) -> AsyncIterator[JSON]:
        return self._interrupt(super().chat(request))

    async def _interrupt(self, stream: AsyncIterator[JSON]) -> AsyncGenerator[JSON, None]:
        armed, self.armed = self.armed, False
        sent = 0
        async with contextlib.aclosing(stream):  # type: ignore[type-var]
            async for chunk in stream:
                yield chunk
                sent += 1
                if armed and sent == self.after:
                    self.broke.set()
                    if self.how == "kill":
                        assert self.process is not None and self.process.pid is not None
                        os.kill(self.process.pid, signal.SIGKILL)
                    else:
                        print("PAUSED", flush=True)
                        await asyncio.Event().wait()


async def _serve(args: argparse.Namespace) -> None:
    from olol.agent.config import AgentConfig
    from olol.agent.server import AioAgent

    backend = InterruptedLlama(after=args.after, how="pause", model_path=args.model, model_name="tiny",
                               server_bin=args.bin, ctx_size=1024, threads=1, parallel=1, embeddings=False)
    backend.armed = True
    await backend.start()
    assert backend.process is not None
    await backend.process.wait_ready()
    agent = await AioAgent.start(AgentConfig(host="127.0.0.1", port=0, state_interval=0.2), backend)
    print(f"READY {agent.target}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--bin", required=True)
    p.add_argument("--after", type=int, required=True)
    asyncio.run(_serve(p.parse_args()))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
    sys.exit(0)
