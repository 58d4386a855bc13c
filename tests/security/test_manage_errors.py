"""Management requests every host refuses: the hosts' own 4xx reaches the client, Ollama-shaped, never a 500."""

from __future__ import annotations

import aiohttp
import pytest

from olol.proxy.http.manage import failure_status
from tests.proxy.helpers import proxy_over
from tests.support.sim_fixtures import SimFactory

# The proxy's name check (Ollama's) lets a digest pin through; the hosts here refuse it: 400 "invalid model name".
BAD_NAME = "llama3.2@sha256:0"


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([400, 400], 400),  # every host says the request is bad: so does the proxy
        ([404], 404),
        ([400, 502], 400),  # a host's verdict on the request beats a host that broke
        ([404, 400, 400, 500], 400),  # disagreeing 4xx: the most common
        ([404, 400], 400),  # a tie: the lowest, so the answer is stable
        ([503, 503], 503),  # the same server-side failure everywhere passes through
        ([500, 504], 502),  # hosts failing differently: a bad gateway
        ([], 500),  # failures without a status (a stream that just ended)
    ],
)
def test_failure_status_picks_the_most_relevant(statuses: list[int], expected: int) -> None:
    assert failure_status(statuses) == expected


@pytest.mark.parametrize("path", ["/api/pull", "/api/create"])
async def test_a_400_from_every_host_is_passed_through(ollama_sim_factory: SimFactory, path: str) -> None:
    sims = await ollama_sim_factory.many(2)
    async with proxy_over(*sims) as proxy, aiohttp.ClientSession() as http:
        body = {"model": BAD_NAME, "stream": False, **({"from": "llama3.2"} if path == "/api/create" else {})}
        async with http.post(proxy.url + path, json=body) as resp:
            reply = await resp.json()
            assert resp.status == 400, reply
            assert reply == {"error": reply["error"]} and "invalid model name" in reply["error"]
            assert path != "/api/pull" or "X-OLOL-Report" in resp.headers  # which host said what
        async with http.post(proxy.url + path, json={**body, "stream": True}) as resp:
            assert resp.status == 200  # streamed, the error is the feed's last line, as Ollama does it
            assert "invalid model name" in (await resp.text()).splitlines()[-1]


async def test_copy_on_every_host_failing_keeps_their_status(ollama_sim_factory: SimFactory) -> None:
    sims = await ollama_sim_factory.many(2)
    async with proxy_over(*sims) as proxy, aiohttp.ClientSession() as http:
        source = sorted(next(iter(proxy.context.cluster.hosts.values())).models)[0]
        async with http.post(proxy.url + "/api/copy", json={"source": source, "destination": BAD_NAME}) as resp:
            reply = await resp.json()
            assert resp.status == 400 and f'destination "{BAD_NAME}" is invalid' in reply["error"], reply
