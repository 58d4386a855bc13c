"""Connections and authentication under abuse (issue 20).

On d9d1e00 1,100 idle connections from one client under a 1,024-descriptor limit
made 74 of 78 normal requests fail, the HTTP parser's own errors were plain text,
wrong keys could be tried at full speed, and a proxy open beyond loopback without
keys said nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import pytest

from olol.security.apikeys import ApiKeys
from olol.security.http import warn_if_open_http
from olol.security.limits import HttpLimits
from olol.security.settings import SecuritySettings
from tests.proxy.helpers import proxy_over
from tests.support.ollama_sim import OllamaSim

KEY = "the-right-key-0123456789abcdef"


async def _closed_by_peer(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), 2.0) == b""
    except TimeoutError:
        return False


async def test_one_client_cannot_hold_more_than_its_connections() -> None:
    security = SecuritySettings(limits=HttpLimits(max_connections_per_client=4))
    async with OllamaSim() as sim, proxy_over(sim, security=security) as proxy:
        opened = [await asyncio.open_connection("127.0.0.1", proxy.port) for _ in range(6)]
        try:
            closed = [await _closed_by_peer(reader) for reader, _ in opened[4:]]
            assert closed == [True, True]
            # The four it kept still serve.
            reader, writer = opened[0]
            writer.write(b"GET /api/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert (await asyncio.wait_for(reader.read(), 10)).startswith(b"HTTP/1.1 200")
        finally:
            for _, writer in opened:
                writer.close()
        await asyncio.sleep(0.2)  # the server sees the closes
        async with aiohttp.ClientSession() as http, http.get(proxy.url + "/api/version") as r:
            assert r.status == 200  # the slots were given back


def test_the_default_cap_is_a_quarter_of_the_descriptors() -> None:
    import resource

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    expected = 1 << 20 if soft == resource.RLIM_INFINITY else max(64, soft // 4)
    assert HttpLimits().connection_cap() == expected
    assert HttpLimits(max_connections_per_client=7).connection_cap() == 7


@pytest.mark.parametrize(
    "raw", [b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n", b"GET /\xff HTTP/1.1\r\n\r\n"]
)
async def test_the_http_parser_refuses_in_ollamas_shape(raw: bytes) -> None:
    async with OllamaSim() as sim, proxy_over(sim) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        try:
            writer.write(raw)
            reply = await asyncio.wait_for(reader.read(), 10)
        finally:
            writer.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].endswith(b"400 Bad Request")
    assert b"Content-Type: application/json" in head
    assert json.loads(body)["error"].startswith("bad request")


async def test_failed_authentications_are_rate_limited_per_address() -> None:
    security = SecuritySettings(
        api_keys=ApiKeys.parse([KEY]), limits=HttpLimits(auth_failure_rate=0.5, auth_failure_burst=3)
    )
    async with OllamaSim() as sim, proxy_over(sim, security=security) as proxy, aiohttp.ClientSession() as http:

        async def tags(key: str) -> tuple[int, str | None]:
            async with http.get(proxy.url + "/api/tags", headers={"Authorization": f"Bearer {key}"}) as r:
                await r.read()
                return r.status, r.headers.get("Retry-After")

        assert [await tags("wrong-guess-0123456789") for _ in range(3)] == [(401, None)] * 3
        status, retry_after = await tags("another-guess-0123456789")
        assert status == 429 and retry_after is not None and int(retry_after) >= 1
        assert (await tags(KEY))[0] == 429  # even the right key: a guesser learns nothing from the answer
        await asyncio.sleep(2.1)  # one failure's worth of time
        assert (await tags(KEY))[0] == 200


def test_an_open_proxy_beyond_loopback_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.open")
    with caplog.at_level(logging.WARNING, logger="test.open"):
        warn_if_open_http(logger, "127.0.0.1", 8000, SecuritySettings())
        warn_if_open_http(logger, "0.0.0.0", 8000, SecuritySettings(api_keys=ApiKeys.parse([KEY])))
        assert not caplog.records
        warn_if_open_http(logger, "0.0.0.0", 8000, SecuritySettings())
    assert "no API keys" in caplog.records[0].getMessage()
