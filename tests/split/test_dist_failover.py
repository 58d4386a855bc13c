"""Workers failing while a split model is served: the coordinator re-plans and serves the next request."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from olol.split.front import DistFront
from tests.split.conftest import N_PREDICT, PROMPT, TOKEN, DistFactory, RpcFactory, complete

pytestmark = pytest.mark.slow

MIB = 1 << 20


async def _until(predicate: object, timeout: float = 60.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.05)


async def test_worker_host_lost_then_worker_crash(
    rpc_server: RpcFactory, dist: DistFactory, baseline_text: str
) -> None:
    servers = [await rpc_server(memory_limit=int(2.5 * MIB)), await rpc_server(), await rpc_server()]
    coordinator = await dist(servers)
    # Equally fast workers: two blocks' worth of memory on the first is not enough to be worth a hop.
    assert coordinator.plan is not None and coordinator.plan.tensor_split == (4, 1)
    assert coordinator.plan.used_addresses == (servers[1].target, servers[2].target)
    front = DistFront(coordinator)
    await front.start()
    try:
        assert await complete(front.url) == baseline_text

        # A whole worker host goes away: its tunnel breaks, the coordinator re-plans over the other two
        # (the first now takes the two blocks it has room for), and the next request is served.
        lost = servers[1]
        await lost.stop()
        assert await complete(front.url) == baseline_text
        assert coordinator.generation == 2
        assert coordinator.plan.used_addresses == (servers[0].target, servers[2].target)
        assert coordinator.plan.tensor_split == (2, 3)
        # Whichever noticed first (the broken tunnel, llama-server's exit, the health check) said why.
        assert len(coordinator.failures) == 1

        # The ggml worker behind an rpc-server crashes: the rpc-server restarts it, llama-server loses its
        # connection, and the coordinator re-plans over the same workers, which still answer.
        crashed = servers[2]
        await crashed.worker.kill()
        await _until(lambda: crashed.worker.restarts == 1 and coordinator.generation == 3 and coordinator.ready)
        assert await complete(front.url) == baseline_text
        assert coordinator.plan.used_addresses == (servers[0].target, servers[2].target)

        async with aiohttp.ClientSession() as session, session.get(front.url + "/olol/status") as r:
            status = await r.json()
        assert status["generation"] == 3 and status["plan"]["tensor_split"] == [2, 3]
    finally:
        await front.close()


async def test_served_as_an_agent_backend(rpc_server: RpcFactory, dist: DistFactory, baseline_text: str) -> None:
    """`olol dist --agent-port`: an agent in front of the split model, as `olol proxy` reaches hosts."""
    from olol.backends.agent import AgentBackend
    from olol.cli.dist_run import start_agent

    coordinator = await dist([await rpc_server(), await rpc_server()], alias="tiny-split")
    front = DistFront(coordinator)
    await front.start()
    agent = await start_agent(coordinator, front.url, "127.0.0.1", 0)
    client = AgentBackend(f"127.0.0.1:{agent.port}", token=TOKEN)
    try:
        request = {"model": "tiny-split", "prompt": PROMPT, "raw": True, "stream": False,
                   "options": {"temperature": 0, "num_predict": N_PREDICT}}  # fmt: skip
        text = "".join([part.get("response", "") async for part in client.generate(request)])
        assert text == baseline_text
    finally:
        await client.close()
        await agent.stop()
        await front.close()
