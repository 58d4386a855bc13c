"""The dashboard in chromium, against live test clusters (simulated hosts; one real llama.cpp host).

What an operator relies on: the page shows every host and model with no errors,
follows a host that dies and comes back, chats through the cluster, pulls with a
progress bar, drains a host without cutting its stream, renders hostile names
as text, and shows nothing without a key. The README's screenshots are taken on
the demo cluster instead (test_demo_screenshots.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.parse
from collections.abc import AsyncIterator

import aiohttp
import pytest

from olol.backends.llamacpp.backend import LlamaCppBackend
from olol.proxy import ProxyConfig, start_proxy
from olol.proxy.ui.routes import FEED
from olol.security.apikeys import ApiKeys
from olol.security.settings import SecuritySettings
from tests.proxy.helpers import proxy_over
from tests.support.agent_fixtures import start_agent
from tests.support.ollama_sim import ModelSpec, OllamaSim, default_models
from tests.ui.conftest import Browser

FULL_KEY = "dashboard-full-key-0123456789"
READ_KEY = "dashboard-read-key-0123456789"
XSS = "<img src=x onerror=alert(1)>"


def keys() -> SecuritySettings:
    return SecuritySettings(api_keys=ApiKeys.parse([FULL_KEY, f"{READ_KEY}:read"]))


async def chat(http: aiohttp.ClientSession, url: str, model: str, key: str = FULL_KEY, content: str = "hello",
               **options: object) -> str:
    body = {"model": model, "messages": [{"role": "user", "content": content}], "stream": False,
            "options": options}
    async with http.post(f"{url}/api/chat", json=body, headers={"Authorization": f"Bearer {key}"}) as resp:
        assert resp.status == 200, await resp.text()
        return resp.headers["X-OLOL-Host"]


@contextlib.asynccontextmanager
async def traffic(url: str, models: list[str], every: float = 0.15) -> AsyncIterator[None]:
    """Chats sent in the background while the block runs: the charts and routing list have something to show."""

    async def run() -> None:
        async with aiohttp.ClientSession() as http:
            n = 0
            while True:
                # New conversations and returning ones (affinity hits), in waves so the chart has a shape.
                await chat(http, url, models[n % len(models)], content=f"question {n % 7}", num_predict=12)
                n += 1
                await asyncio.sleep(every * (1 + 2 * ((n // 12) % 2)))

    task = asyncio.create_task(run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_page_shows_every_host_and_model_with_no_console_errors(  # type: ignore[no-untyped-def]
    ollama_sim_factory, browser: Browser
) -> None:
    sims = [await ollama_sim_factory(token_rate=80, latency=0.03) for _ in range(3)]
    async with proxy_over(*sims, security=keys()) as proxy:
        async with traffic(proxy.url, ["llama3.2", "qwen3:0.6b", "llama3.2:1b-q8_0"]):
            dash = await (await browser(proxy.url)).open(FULL_KEY)
            await dash.live()
            page = dash.page
            for sim in sims:
                await page.wait_for_selector(dash.host_row(sim.url))
            shown = await page.eval_on_selector_all("#models tr", "rows => rows.map(r => r.dataset.model)")
            assert set(shown) == {"llama3.2:latest", "llama3.2:1b-q8_0", "nomic-embed-text:latest", "qwen3:0.6b"}
            assert await page.text_content("#s-hosts") == "3 / 3"
            assert await page.text_content("#access") == "full key"
            assert await page.text_content("#s-resumes") == "0 / 0"  # no stream broke (issue 15's counter)
            # Let the charts and the routing list fill in (the feed ticks once a second).
            await page.wait_for_function("() => document.querySelectorAll('#recent tr td.mono').length >= 6")
            await page.wait_for_function("() => document.querySelector('#s-rps').textContent !== '0.0'", timeout=10_000)
            legend = await page.eval_on_selector_all("#traffic-chart .u-label", "ls => ls.map(l => l.textContent)")
            assert "resumes/s" in legend
            # A chat in the playground too: every part of the page at work at once.
            await page.fill("#pg-input", "Which host are you?")
            await page.click("#pg-send")
            await page.wait_for_selector("#pg-meta .pg-host")
        assert dash.errors == []


async def test_a_killed_host_turns_down_within_3s_and_up_when_it_returns(  # type: ignore[no-untyped-def]
    ollama_sim, ollama_sim_process, browser: Browser
) -> None:
    victim = await ollama_sim_process()  # a host in its own process, so it can really be killed
    port = urllib.parse.urlsplit(victim.url).port
    async with proxy_over(ollama_sim, victim.url) as proxy:
        dash = await (await browser(proxy.url)).open()
        await dash.live()
        state = f"{dash.host_row(victim.url)} .badge"
        assert await dash.page.text_content(state) == "up"
        killed = time.monotonic()
        victim.kill()  # SIGKILL: nothing closed politely
        await dash.wait_text(state, "down", timeout=3_000)
        assert time.monotonic() - killed <= 3.0
        assert await dash.page.text_content("#s-hosts") == "1 / 2"
        await ollama_sim_process(port=port)  # it comes back at the same address
        await dash.wait_text(state, "up", timeout=5_000)
        assert dash.errors == []


async def test_the_page_reconnects_after_losing_the_proxy(ollama_sim, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    async with proxy_over(ollama_sim) as proxy:
        port = proxy.port
        dash = await (await browser(proxy.url)).open()
        await dash.live()
    await dash.page.wait_for_selector("#conn.conn-bad", timeout=10_000)
    assert "reconnecting" in (await dash.page.text_content("#conn") or "")
    again = await start_proxy(ProxyConfig(host="127.0.0.1", port=port, servers=[ollama_sim.url]))
    try:
        await dash.page.wait_for_selector("#conn.conn-ok", timeout=15_000)
    finally:
        await again.stop()


async def test_pull_shows_a_progress_bar_that_completes(ollama_sim_factory, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    sims = await ollama_sim_factory.many(2, pull_delay=0.05)
    async with proxy_over(*sims) as proxy:
        dash = await (await browser(proxy.url)).open()
        await dash.live()
        page = dash.page
        # Every value the bar takes, as the page sets it.
        await page.evaluate("""() => { window.seen = []; const bar = document.getElementById('pull-progress');
            new MutationObserver(() => window.seen.push(bar.value)).observe(bar, {attributes: true}); }""")
        await page.fill("#pull-model", "qwen2.5:0.5b")
        await page.fill("#pull-replicas", "2")
        await page.click("#pull-button")
        await dash.confirm()
        await page.wait_for_function("() => document.getElementById('pull-text').textContent.includes('done')",
                                     timeout=30_000)
        assert await page.eval_on_selector("#pull-progress", "b => b.value") == 1
        seen = await page.evaluate("window.seen")
        assert any(0 < v < 1 for v in seen), seen  # it moved through the transfer, not only to the end
        await page.wait_for_selector('#models tr[data-model="qwen2.5:0.5b"]', timeout=5_000)
        hosts = await page.eval_on_selector_all('#models tr[data-model="qwen2.5:0.5b"] .chip', "c => c.length")
        assert hosts >= 2
        # Deleting it from the cluster, confirmed, takes it off the page.
        await page.click('#models tr[data-model="qwen2.5:0.5b"] button[data-action="delete"]')
        await dash.confirm()
        await page.wait_for_selector('#models tr[data-model="qwen2.5:0.5b"]', state="detached", timeout=10_000)
        assert all("qwen2.5:0.5b" not in s.models for s in sims)
        assert dash.errors == []


SPLIT = {
    "model": "/models/llama3-70b-q4_0.gguf", "ready": True, "host": "127.0.0.1:41000",
    "plan": {"rpc_servers": ["10.0.0.2:50052", "10.0.0.3:50052"], "tensor_split": [0.25, 0.75],
             "assignments": [{"host": "10.0.0.2:50052", "start": 0, "stop": 20, "output": False,
                              "memory_bytes": 10_000_000_000},
                             {"host": "10.0.0.3:50052", "start": 20, "stop": 80, "output": True,
                              "memory_bytes": 30_000_000_000}]},
    "tunnels": {"10.0.0.2:50052": {"data_path": "data-port", "bytes_in": 1_000_000, "bytes_out": 2_000_000}},
}


async def test_a_split_models_layer_plan_is_drawn_per_worker(ollama_sim, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    async with proxy_over(ollama_sim) as proxy:
        feed = proxy.runner.app[FEED]
        plain = feed.build
        feed.build = lambda: {**plain(), "split": SPLIT}  # what install_ui adds when a model is split
        dash = await (await browser(proxy.url)).open()
        await dash.live()
        page = dash.page
        await page.wait_for_selector("#split-card:not([hidden]) .split-row")
        labels = await page.eval_on_selector_all(".split-label", "ls => ls.map(l => l.textContent)")
        assert labels == ["10.0.0.2:50052", "10.0.0.3:50052 (output)"]
        # Bars proportional to layers (20 of 80, 60 of 80) and to memory (10 of 40 GB, 30 of 40 GB).
        widths = await page.eval_on_selector_all(".split-bar", "bs => bs.map(b => b.firstChild.style.width)")
        assert widths == ["25%", "25%", "75%", "75%"]
        assert "data-port" in (await page.text_content("#split-tunnels") or "")
        assert dash.errors == []


async def test_drain_from_the_page_lets_the_open_stream_finish(ollama_sim_factory, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    sims = await ollama_sim_factory.many(2, token_rate=25)
    async with proxy_over(*sims) as proxy, aiohttp.ClientSession() as http:
        dash = await (await browser(proxy.url)).open()
        await dash.live()
        body = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "options": {"num_predict": 40}}
        stream = await http.post(f"{proxy.url}/api/chat", json=body)  # ~1.6 s of tokens
        busy = stream.headers["X-OLOL-Host"]
        await stream.content.readline()
        await dash.page.click(f'{dash.host_row(busy)} button[data-action="drain"]')
        await dash.confirm()
        badge = f"{dash.host_row(busy)} .badge"
        await dash.wait_text(badge, "draining")
        for _ in range(3):
            assert await chat(http, proxy.url, "llama3.2", num_predict=2) != busy
        lines = [line async for line in stream.content if line.strip()]
        assert b'"done":true' in lines[-1]  # the stream that was open on the drained host ran to its end
        stream.release()
        await dash.page.click(f'{dash.host_row(busy)} button[data-action="undrain"]')
        await dash.confirm()
        await dash.wait_text(badge, "up")
        assert not proxy.context.cluster.hosts[busy].draining
        assert dash.errors == []


async def test_a_hostile_model_name_is_shown_as_text_and_runs_nothing(browser: Browser) -> None:
    async with OllamaSim([*default_models(), ModelSpec(XSS)]) as sim, proxy_over(sim) as proxy:
        dash = await (await browser(proxy.url)).open()
        await dash.live()
        page = dash.page
        names = await page.eval_on_selector_all("#models tr td.mono", "tds => tds.map(td => td.textContent)")
        hostile = [n for n in names if "onerror" in n]
        assert hostile and hostile[0].startswith(XSS)
        assert await page.eval_on_selector_all("main img", "imgs => imgs.length") == 0
        options = await page.eval_on_selector_all("#pg-model option", "os => os.map(o => o.textContent)")
        assert any(o.startswith(XSS) for o in options)
        await asyncio.sleep(1.5)  # another update or two: still nothing ran
        assert dash.dialogs == [] and dash.errors == []


async def test_without_a_key_the_page_asks_for_one_and_shows_nothing(ollama_sim, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    async with proxy_over(ollama_sim, security=keys()) as proxy:
        dash = await (await browser(proxy.url)).open()
        page = dash.page
        await page.wait_for_selector("#key-prompt:not([hidden])")
        assert await page.is_hidden("#dash")
        html = await page.content()
        assert urllib.parse.urlsplit(ollama_sim.url).netloc not in html and "llama3.2" not in html
        # A wrong key is refused and the page still shows nothing.
        await page.fill("#key-input", "not-a-key-of-this-cluster")
        await page.click("#key-submit")
        await page.wait_for_function("() => document.getElementById('key-error').textContent.includes('not accepted')")
        assert await page.is_hidden("#dash")
        # A read key shows the cluster, and no action is offered.
        await page.fill("#key-input", READ_KEY)
        await page.click("#key-submit")
        await dash.live()
        assert await page.text_content("#access") == "read-only key"
        assert await page.is_disabled(f'{dash.host_row(ollama_sim.url)} button[data-action="drain"]')
        assert await page.is_disabled("#pull-button") and await page.is_disabled("#pg-send")


@pytest.mark.slow
async def test_playground_chat_streams_through_a_real_llama_cpp_host(  # type: ignore[no-untyped-def]
    llama_server, ollama_sim_factory, browser: Browser
) -> None:
    sim = await ollama_sim_factory(token_rate=60)
    agent = await start_agent("asyncio", LlamaCppBackend(url=llama_server.url, model_path=llama_server.model_path))
    try:
        async with proxy_over(agent.target, sim, security=keys()) as proxy:
            dash = await (await browser(proxy.url)).open(FULL_KEY)
            await dash.live()
            page = dash.page
            await page.wait_for_selector('#pg-model option[value="tiny:latest"]', state="attached")
            await page.select_option("#pg-model", "tiny:latest")
            # Several chunks arrive before the answer is done: the text grows while it streams.
            await page.evaluate("""() => { window.lengths = []; const log = document.getElementById('pg-log');
                new MutationObserver(() => {
                    const last = document.querySelector('#pg-log .msg-assistant:last-child .msg-text');
                    if (last) window.lengths.push(last.textContent.length);
                }).observe(log, {subtree: true, childList: true, characterData: true}); }""")
            await page.fill("#pg-input", "Tell me about clusters.")
            await page.click("#pg-send")
            await page.wait_for_selector("#pg-meta .pg-host", timeout=60_000)
            assert await page.text_content("#pg-meta .pg-host") == agent.target
            meta = await page.text_content("#pg-meta") or ""
            assert "TTFT" in meta and "tok/s" in meta
            answer = await page.text_content("#pg-log .msg-assistant .msg-text") or ""
            assert answer.strip()
            lengths = await page.evaluate("window.lengths")
            # It streamed: the page showed part of the answer before the whole. (One partial length is enough:
            # the tiny model writes ~400 tokens/s, so a busy browser may paint several chunks at once.)
            assert any(0 < n < len(answer) for n in lengths), lengths
            assert dash.errors == []
    finally:
        await agent.client.close()
        await agent.stop()
