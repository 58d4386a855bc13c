"""Lifecycle: `start_proxy` on a free port, `serve` until SIGTERM, with in-flight requests finishing."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import ollama
import pytest

from olol.eventloop import event_loop_factory
from olol.proxy import ProxyConfig, start_proxy

REPO = Path(__file__).resolve().parents[2]


async def test_start_proxy_takes_a_free_port_and_stops_cleanly(ollama_sim) -> None:  # type: ignore[no-untyped-def]
    proxy = await start_proxy(ProxyConfig(host="127.0.0.1", port=0, servers=[ollama_sim.url]))
    try:
        assert proxy.port > 0 and proxy.url == f"http://127.0.0.1:{proxy.port}"
        assert (await ollama.AsyncClient(host=proxy.url).generate(model="llama3.2", prompt="x")).done
    finally:
        await proxy.stop()
    async with aiohttp.ClientSession() as http:
        try:
            await http.get(proxy.url + "/")
            raise AssertionError("still listening after stop()")
        except aiohttp.ClientConnectionError:
            pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_serve_finishes_in_flight_requests_on_sigterm(ollama_sim) -> None:  # type: ignore[no-untyped-def]
    ollama_sim.latency = 0.5
    port = free_port()
    code = ("from olol.proxy import ProxyConfig, serve; "
            f"serve(ProxyConfig(host='127.0.0.1', port={port}, servers=[{ollama_sim.url!r}]))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.get(url + "/api/tags") as r:
                        if (await r.json())["models"]:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.05)
            pending = asyncio.create_task(
                http.post(url + "/api/generate", json={"model": "llama3.2", "prompt": "x", "stream": False}))
            await asyncio.sleep(0.2)
            proc.send_signal(signal.SIGTERM)
            async with await pending as r:
                assert r.status == 200 and (await r.json())["done"]
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_the_cli_proxy_runs_on_uvloop_when_installed_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    uvloop = pytest.importorskip("uvloop")
    monkeypatch.delenv("OLOL_EVENT_LOOP", raising=False)
    assert event_loop_factory() is uvloop.new_event_loop
    monkeypatch.setenv("OLOL_EVENT_LOOP", "asyncio")
    assert event_loop_factory() is None
