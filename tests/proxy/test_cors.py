"""CORS as Ollama answers it: its default origins, `OLLAMA_ORIGINS`, preflight answered, foreign origins 403."""

from __future__ import annotations

import aiohttp
import pytest

from olol.security.cors import CorsPolicy, default_origins
from olol.security.settings import SecuritySettings
from tests.proxy.helpers import proxy_over
from tests.support.ollama_sim import OllamaSim

PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://localhost", True),
        ("http://localhost:3000", True),
        ("https://127.0.0.1:8443", True),
        ("http://0.0.0.0:80", True),
        ("app://obsidian.md", True),
        ("file://", True),
        ("tauri://localhost", True),
        ("vscode-webview://abc", True),
        ("chrome-extension://abcdefgh", True),
        ("moz-extension://1234", True),
        ("https://evil.example", False),
        ("http://localhost.evil.example", False),
        ("http://192.168.1.5:3000", False),
    ],
)
def test_ollamas_default_origins(origin: str, allowed: bool) -> None:
    assert CorsPolicy.of(default_origins({})).allows(origin) is allowed


def test_ollama_origins_adds_to_the_defaults_and_star_allows_all() -> None:
    policy = CorsPolicy.of(default_origins({"OLLAMA_ORIGINS": "https://app.example, https://*.corp.example"}))
    assert policy.allows("https://app.example") and policy.allows("https://chat.corp.example")
    assert policy.allows("http://localhost:1") and not policy.allows("https://other.example")
    anyone = CorsPolicy.of(default_origins({"OLLAMA_ORIGINS": "*"}))
    assert anyone.allows("https://anything.example") and anyone.allow_origin("https://x.example") == "*"


async def test_preflight_from_an_allowed_and_a_refused_origin(ollama_sim: OllamaSim) -> None:
    async with proxy_over(ollama_sim) as proxy, aiohttp.ClientSession() as http:
        ok = {"Origin": "http://localhost:5173", **PREFLIGHT}
        async with http.options(proxy.url + "/api/chat", headers=ok) as resp:
            assert resp.status == 204
            assert resp.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
            assert "POST" in resp.headers["Access-Control-Allow-Methods"].split(",")
            assert "Content-Type" in resp.headers["Access-Control-Allow-Headers"].split(",")
        refused = {"Origin": "https://evil.example", **PREFLIGHT}
        async with http.options(proxy.url + "/api/chat", headers=refused) as resp:
            assert resp.status == 403 and "Access-Control-Allow-Origin" not in resp.headers
            assert await resp.read() == b""
        # The request itself: allowed origins get the header on streams too; a foreign one is refused unserved.
        body = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}
        async with http.post(proxy.url + "/api/chat", json=body, headers={"Origin": "app://x"}) as resp:
            assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == "app://x"
            await resp.read()
        async with http.post(proxy.url + "/api/chat", json=body, headers={"Origin": "https://evil.example"}) as resp:
            assert resp.status == 403
        # No Origin (every non-browser client): no CORS at all.
        async with http.get(proxy.url + "/api/version") as resp:
            assert resp.status == 200 and "Access-Control-Allow-Origin" not in resp.headers
    assert ollama_sim.requests["/api/chat"] == 1


async def test_ollama_origins_reaches_the_proxy(ollama_sim: OllamaSim, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_ORIGINS", "https://webui.example")
    async with (
        proxy_over(ollama_sim, security=SecuritySettings()) as proxy,
        aiohttp.ClientSession() as http,
        http.options(proxy.url + "/v1/chat/completions", headers={"Origin": "https://webui.example", **PREFLIGHT})
        as resp,
    ):
        assert resp.status == 204 and resp.headers["Access-Control-Allow-Origin"] == "https://webui.example"
