"""The README's screenshots: the dashboard on the demo cluster, in chromium.

The cluster is the real `olol demo` command, run as a subprocess on a free
loopback port: its llama.cpp agents serve the real Gemma 3 270M (the model the
`gemma_model` fixture fetched; the demo finds it in the same cache), with the
proxy in front. The test waits until the demo says it is serving and every host
is up with the model loaded, sends a little traffic, checks the page, chats in
the playground and writes docs/img/dashboard.png and dashboard-playground.png.
The demo is stopped the way a user stops it (Ctrl-C); whatever it started and
did not stop is killed, and the test fails on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil
import pytest

from olol.backends.llamacpp.bins import LlamaBinaries
from olol.backends.llamacpp.gemma_model import NAME as GEMMA
from olol.cli.demo_run import olol_command
from tests.ui.conftest import Browser

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "img"
HOSTS = 2  # `olol demo`'s default
MODEL = f"{GEMMA}:latest"
# Gemma 3 270M is a base model: it continues text well and chats poorly, so the playground gets the start of a text.
PLAYGROUND_PROMPT = "Paris is the capital of France. It is famous for"
PLAYGROUND_TRIES = 5  # sampled (the playground sends no temperature): a base model sometimes only repeats itself
TRAFFIC = ["The tallest mountain in the world is", "The largest ocean on Earth is",
           "The longest river in Africa is", "The capital of Japan is", "The fastest animal on land is",
           "The closest star to the Sun is", "The oldest university in Europe is", "The smallest planet is"]


@dataclass
class Demo:
    proc: asyncio.subprocess.Process
    output: list[str] = field(default_factory=list)
    url: str = ""
    model_path: str = ""
    agents: list[str] = field(default_factory=list)
    leftover: list[str] = field(default_factory=list)  # processes the demo left running (killed by the test)


async def _read_until_serving(demo: Demo, timeout: float) -> None:
    """The demo's lines until it says it is serving: the proxy's URL, the model, each agent's address."""
    assert demo.proc.stdout is not None
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("olol demo did not start serving in time:\n" + "".join(demo.output))
        raw = await asyncio.wait_for(demo.proc.stdout.readline(), left)
        if not raw:
            raise RuntimeError(f"olol demo exited ({await demo.proc.wait()}) before serving:\n" + "".join(demo.output))
        line = raw.decode(errors="replace")
        demo.output.append(line)
        if m := re.match(r"proxy \(Ollama API\) on (http://\S+)", line):
            demo.url = m.group(1)
        elif m := re.match(r"model: (.+) \(served as ", line):
            demo.model_path = m.group(1)
        elif m := re.match(r"\s+agent pid \d+ on (\S+) ", line):
            demo.agents.append(m.group(1))
        elif line.startswith("Serving."):
            return


async def _drain(demo: Demo) -> None:
    """Keep reading what the demo prints (a full pipe would block it), for the report if something fails."""
    assert demo.proc.stdout is not None
    async for raw in demo.proc.stdout:
        demo.output.append(raw.decode(errors="replace"))


async def _wait_all_up(demo: Demo, timeout: float = 60.0) -> None:
    """Poll the proxy until every agent is up with the model loaded."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(f"{demo.url}/api/status") as resp:
                hosts = {h["id"]: h for h in (await resp.json())["hosts"]}
            if all(a in hosts and hosts[a].get("state") == "up" and MODEL in (hosts[a].get("loaded") or [])
                   for a in demo.agents):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"hosts not all up with {MODEL}: {hosts}")
            await asyncio.sleep(0.2)


def _tree(demo: Demo) -> list[psutil.Process]:
    """What the demo started (agents, their llama-servers), as it is now."""
    with contextlib.suppress(psutil.NoSuchProcess):
        return psutil.Process(demo.proc.pid).children(recursive=True)
    return []


async def _stop(demo: Demo, seen: list[psutil.Process], grace: float = 60.0) -> None:
    """Ctrl-C, as a user stops the demo; then SIGKILL for anything of its tree still running (and note it)."""
    tree = {p.pid: p for p in [*seen, *_tree(demo)]}
    if demo.proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            demo.proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(demo.proc.wait(), grace)
        except TimeoutError:
            demo.leftover.append("olol demo")
            demo.proc.kill()
            await demo.proc.wait()
    # The demo stops its agents and each agent its llama-server: nothing of them should be left.
    _, alive = await asyncio.to_thread(psutil.wait_procs, list(tree.values()), 10)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            demo.leftover.append(" ".join(p.cmdline()[:3]))
            p.kill()
    await asyncio.to_thread(psutil.wait_procs, alive, 10)


@contextlib.asynccontextmanager
async def demo_cluster(hosts: int = HOSTS, timeout: float = 240.0) -> AsyncIterator[Demo]:
    """`olol demo --port 0 --hosts N --model gemma`, serving until the block ends."""
    proc = await asyncio.create_subprocess_exec(
        *olol_command(), "demo", "--port", "0", "--hosts", str(hosts), "--model", "gemma",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},  # its lines as it prints them, not at exit
    )
    demo = Demo(proc)
    drain: asyncio.Task[None] | None = None
    seen: list[psutil.Process] = []
    try:
        await _read_until_serving(demo, timeout)
        seen = _tree(demo)
        drain = asyncio.create_task(_drain(demo))
        await _wait_all_up(demo)
        yield demo
    finally:
        await _stop(demo, seen)
        if drain is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(drain, 10)


async def _generate(http: aiohttp.ClientSession, url: str, prompt: str) -> str:
    body = {"model": GEMMA, "prompt": prompt, "stream": False, "options": {"num_predict": 16}}
    async with http.post(f"{url}/api/generate", json=body) as resp:
        assert resp.status == 200, await resp.text()
        return resp.headers["X-OLOL-Host"]


def _reads_as_text(answer: str) -> bool:
    """Many different words of its own early on: not the prompt echoed, nor one phrase over and over."""
    def words(text: str) -> set[str]:
        return set(re.findall(r"[a-z]{3,}", text.lower()))

    return len(words(answer[:300]) - words(PLAYGROUND_PROMPT)) >= 10


@pytest.mark.slow
async def test_readme_screenshots_of_the_dashboard_on_the_demo_cluster(
    gemma_model: Path, llama_bins: LlamaBinaries, browser: Browser
) -> None:
    async with demo_cluster() as demo:
        assert Path(demo.model_path) == gemma_model  # the fixture's model, found by the demo in the same cache
        assert len(demo.agents) == HOSTS
        dash = await (await browser(demo.url)).open()
        await dash.live()
        page = dash.page
        # A little traffic while the page watches, two at a time: the charts and the routing list show it.
        async with aiohttp.ClientSession() as http:
            for i in range(0, len(TRAFFIC), 2):
                await asyncio.gather(*(_generate(http, demo.url, p) for p in TRAFFIC[i:i + 2]))
        for agent in demo.agents:
            await page.wait_for_selector(dash.host_row(agent))
            assert await page.text_content(f"{dash.host_row(agent)} .badge") == "up"
        assert await page.text_content("#s-hosts") == f"{HOSTS} / {HOSTS}"
        row = f'#models tr[data-model="{MODEL}"]'
        await page.wait_for_selector(row)
        holders = await page.eval_on_selector_all(f"{row} .chip", "cs => cs.map(c => c.textContent)")
        assert set(demo.agents) <= set(holders), holders
        # A chat with Gemma in the playground: it streams an answer and names the host that wrote it. The
        # answer is sampled; one that only repeats itself is cleared and asked again, as a user would.
        await page.wait_for_selector(f'#pg-model option[value="{MODEL}"]', state="attached")
        await page.select_option("#pg-model", MODEL)
        for tries in range(1, PLAYGROUND_TRIES + 1):
            if tries > 1:
                await page.click("#pg-clear")
            await page.fill("#pg-input", PLAYGROUND_PROMPT)
            await page.click("#pg-send")
            await page.wait_for_selector("#pg-meta .pg-host", timeout=120_000)
            assert await page.text_content("#pg-meta .pg-host") in demo.agents
            meta = await page.text_content("#pg-meta") or ""
            assert "TTFT" in meta and "tok/s" in meta
            answer = await page.text_content("#pg-log .msg-assistant .msg-text") or ""
            assert re.search(r"[A-Za-z]{2}", answer), answer  # words, from a real model
            if _reads_as_text(answer):
                break
        # The routing list shows the playground's requests too (the feed ticks once a second): then the pictures.
        sent = 1 + len(TRAFFIC) + tries  # the demo's own first request, the traffic, the playground
        await page.wait_for_function(f"() => document.querySelectorAll('#recent tr').length >= {sent}",
                                     timeout=10_000)
        await page.evaluate("() => window.scrollTo(0, 0)")
        await page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)
        await page.locator("#playground").screenshot(path=str(SCREENSHOTS / "dashboard-playground.png"))
        assert dash.errors == []
    assert demo.leftover == [], demo.leftover
    assert demo.proc.returncode == 0, "".join(demo.output)
