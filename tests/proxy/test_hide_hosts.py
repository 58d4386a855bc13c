"""`--hide-hosts`: no host address in error texts, failure lines or `X-OLOL-*` headers; `host-N` instead."""

from __future__ import annotations

import socket

import aiohttp
from typer.testing import CliRunner

from tests.proxy.helpers import ndjson, proxy_over
from tests.support.ollama_sim import ModelSpec


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


async def test_hosts_are_named_not_addressed(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    good = await ollama_sim_factory()
    bad = await ollama_sim_factory(registry=[ModelSpec("other:1b")])  # its pulls fail
    dead = _closed_port_url()
    addresses = [good.url, bad.url, dead, dead.removeprefix("http://"), good.url.removeprefix("http://")]

    def hidden(text: str) -> bool:
        return not any(a in text for a in addresses)

    async with proxy_over(good, bad, dead, hide_hosts=True) as proxy, aiohttp.ClientSession() as http:
        proxy.context.cluster.hosts[dead].set_models([{"name": "phi3:mini"}])  # known to be there, but down
        async with http.post(proxy.url + "/api/generate", json={"model": "phi3:mini", "prompt": "x"}) as r:
            error = (await r.json())["error"]
            assert r.status == 503 and hidden(error) and "host-3 (down since" in error, error
        async with http.post(proxy.url + "/api/generate", json={"model": "llama3.2", "prompt": "x"}) as r:
            await r.read()
            olol_headers = {k: v for k, v in r.headers.items() if k.upper().startswith("X-OLOL-")}
            assert r.headers["X-OLOL-Host"] in ("host-1", "host-2") and all(map(hidden, olol_headers.values()))
        async with http.post(proxy.url + "/api/pull", json={"model": "qwen2.5:0.5b"}) as r:
            text = (await r.read()).decode()
        assert hidden(text) and "host-2" in text, text
        async with http.post(proxy.url + "/api/pull", json={"model": "qwen2.5:0.5b", "stream": False}) as r:
            assert hidden(await r.text()) and all(map(hidden, r.headers.values()))
    async with proxy_over(good, bad) as proxy, aiohttp.ClientSession() as http, \
            http.post(proxy.url + "/api/pull", json={"model": "qwen2.5:0.5b"}) as r:  # off by default
        assert any(bad.url in str(line) for line in await ndjson(r))


def test_cli_flag_and_config_key(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from olol.cli import app

    captured = {}
    monkeypatch.setattr("olol.proxy.server.serve", lambda cfg: captured.setdefault("cfg", cfg))
    result = CliRunner().invoke(app, ["proxy", "--servers", "http://127.0.0.1:1", "--hide-hosts"])
    assert result.exit_code == 0, result.output
    assert captured.pop("cfg").hide_hosts
    config = tmp_path / "olol.toml"
    config.write_text("[proxy]\nhide_hosts = true\n")
    result = CliRunner().invoke(app, ["proxy", "--servers", "http://127.0.0.1:1", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert captured["cfg"].hide_hosts
