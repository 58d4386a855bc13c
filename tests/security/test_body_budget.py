"""The bytes of request bodies in flight have a total budget; past it, 503 (issue 20).

On d9d1e00 eight 63 MiB bodies at once took the proxy to 2,086 MiB: nothing bounded
how many large bodies it held together.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp

from olol.security.limits import BodyBudget, HttpLimits
from olol.security.settings import SecuritySettings
from tests.proxy.helpers import proxy_over
from tests.support.ollama_sim import OllamaSim

MiB = 1 << 20


def _chat(size: int) -> bytes:
    frame = json.dumps({"model": "llama3.2", "messages": [{"role": "user", "content": "@"}], "stream": False})
    return frame.replace("@", "x" * (size - len(frame))).encode()


def test_the_budget_counts_bytes_in_flight() -> None:
    budget = BodyBudget(100)
    assert budget.take(60) and not budget.take(60) and budget.take(40)
    budget.give(60)
    assert budget.take(60) and budget.in_flight == 100


async def test_a_body_past_the_budget_is_a_503_until_the_others_are_done() -> None:
    security = SecuritySettings(limits=HttpLimits(max_body=1 * MiB, body_budget=1 * MiB))
    sim = OllamaSim(latency=1.5)
    async with sim, proxy_over(sim, security=security) as proxy, aiohttp.ClientSession() as http:

        async def post(size: int) -> tuple[int, dict[str, str]]:
            async with http.post(proxy.url + "/api/chat", data=_chat(size)) as r:
                await r.read()
                return r.status, dict(r.headers)

        first = asyncio.ensure_future(post(700_000))
        while sim.in_flight == 0:  # the first body is held by its request now
            await asyncio.sleep(0.01)
        status, headers = await post(700_000)
        assert status == 503 and headers["Retry-After"] == "1"
        assert (await post(1000))[0] == 200  # small bodies still fit beside it
        assert (await first)[0] == 200
        assert (await post(700_000))[0] == 200  # given back once the first was done
        # A refused body gives its charge back too.
        wrong_type = _chat(900_000).replace(b'"stream": false', b'"stream": 7')
        async with http.post(proxy.url + "/api/chat", data=wrong_type) as r:
            assert r.status == 400
        assert (await post(900_000))[0] == 200
