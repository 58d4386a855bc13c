"""Clients of a secured cluster: the Python clients and the CLI pass the API key, the token and the CA.

Each path against the real server side with keys, token and TLS on: the
proxy's HTTPS API with API keys, an agent's gRPC over TLS with the token, the
proxy's sessions gRPC port. Sync clients and CLI commands block, so they run
in a thread while the servers run on the test's loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from olol.aio import AsyncOllamaClient
from olol.backends.ollama.backend import OllamaBackend
from olol.cli import app
from olol.errors import OlolError
from olol.proxy import RunningProxy
from olol.security.apikeys import ApiKeys
from olol.security.settings import SecuritySettings
from olol.security.tls import TlsFiles
from olol.sync import OllamaClient
from tests.proxy.helpers import proxy_over
from tests.security.conftest import TOKEN, WRONG_TOKEN, Pki
from tests.support.agent_fixtures import RunningAgent, start_agent
from tests.support.ollama_sim import OllamaSim

FULL, READ = "f" * 24, "r" * 24
MODEL = "llama3.2"


@pytest.fixture
async def https_proxy(ollama_sim: OllamaSim, pki: Pki) -> AsyncIterator[RunningProxy]:
    """HTTPS with API keys, the cluster token, and the sessions gRPC port (TLS with the same certificate)."""
    security = SecuritySettings(
        token=TOKEN, tls=TlsFiles(pki.server.cert, pki.server.key), api_keys=ApiKeys.parse([FULL, f"{READ}:read"])
    )
    async with proxy_over(ollama_sim, grpc_port=0, security=security) as proxy:
        assert proxy.url.startswith("https://")
        yield proxy


@pytest.fixture
async def tls_agent(ollama_sim: OllamaSim, pki: Pki) -> AsyncIterator[RunningAgent]:
    agent = await start_agent(
        "asyncio", OllamaBackend(ollama_sim.url), security=SecuritySettings(token=TOKEN, tls=pki.server_tls())
    )
    try:
        yield agent
    finally:
        await agent.client.close()
        await agent.stop()


def _grpc_port(proxy: RunningProxy) -> int:
    assert proxy.context.sessions is not None and proxy.context.sessions.grpc_port
    return proxy.context.sessions.grpc_port


async def _reply(client: AsyncOllamaClient) -> str:
    return "".join([c.response async for c in client.generate(MODEL, "hi")])


async def _status_of_failure(client: AsyncOllamaClient) -> int:
    try:
        await client.list()
    except OlolError as exc:
        return exc.status
    finally:
        await client.close()
    return 200


# ------------------------------------------------------------------ Python clients
async def test_http_client_sends_the_api_key_and_trusts_the_ca(https_proxy: RunningProxy, pki: Pki) -> None:
    async with AsyncOllamaClient(url=https_proxy.url, api_key=FULL, ca=pki.ca.cert) as client:
        assert await _reply(client)
        assert [m.name for m in await client.list()]
        chat = await client.session(MODEL).start()  # sessions over HTTP carry the key too
        assert (await chat.ask("hi")).message.content
    assert await _status_of_failure(AsyncOllamaClient(url=https_proxy.url, ca=pki.ca.cert)) == 401
    assert await _status_of_failure(AsyncOllamaClient(url=https_proxy.url, api_key=READ, ca=pki.ca.cert)) == 403
    # Without the CA the proxy's certificate is not trusted: no request is sent at all.
    assert await _status_of_failure(AsyncOllamaClient(url=https_proxy.url, api_key=FULL)) == 502
    async with AsyncOllamaClient(url=https_proxy.url, api_key=FULL, verify=False) as client:
        assert await client.list()


async def test_sync_client_sends_the_api_key_and_trusts_the_ca(https_proxy: RunningProxy, pki: Pki) -> None:
    def use() -> tuple[int, str]:
        with OllamaClient(url=https_proxy.url, api_key=FULL, ca=pki.ca.cert) as client:
            models = client.list()
            text = "".join(c.response for c in client.generate(MODEL, "hi"))
        return len(models), text

    count, text = await asyncio.to_thread(use)
    assert count and text


async def test_grpc_client_sends_the_token_over_tls(tls_agent: RunningAgent, pki: Pki) -> None:
    host, port = tls_agent.target.rsplit(":", 1)
    async with AsyncOllamaClient(host, int(port), token=TOKEN, ca=pki.ca.cert) as client:
        assert await _reply(client)
    assert await _status_of_failure(AsyncOllamaClient(host, int(port), token=WRONG_TOKEN, ca=pki.ca.cert)) == 401
    plaintext = AsyncOllamaClient(host, int(port), token=TOKEN)  # no CA: plaintext, which a TLS agent refuses
    assert await asyncio.wait_for(_status_of_failure(plaintext), 10) != 200


async def test_grpc_client_presents_a_client_certificate(ollama_sim: OllamaSim, pki: Pki) -> None:
    agent = await start_agent(
        "asyncio",
        OllamaBackend(ollama_sim.url),
        security=SecuritySettings(token=TOKEN, tls=pki.server_tls(mutual=True)),
    )
    try:
        host, port = agent.target.rsplit(":", 1)
        async with AsyncOllamaClient(
            host, int(port), token=TOKEN, ca=pki.ca.cert, cert=pki.client.cert, key=pki.client.key
        ) as member:
            assert await member.list()
        without_cert = AsyncOllamaClient(host, int(port), token=TOKEN, ca=pki.ca.cert)
        assert await asyncio.wait_for(_status_of_failure(without_cert), 10) != 200
    finally:
        await agent.client.close()
        await agent.stop()


@pytest.mark.parametrize("secret", ["token", "api_key"])
async def test_session_client_over_the_grpc_port(https_proxy: RunningProxy, pki: Pki, secret: str) -> None:
    port = _grpc_port(https_proxy)
    given: dict[str, Any] = {"token": TOKEN} if secret == "token" else {"api_key": FULL}
    async with AsyncOllamaClient("127.0.0.1", port, ca=pki.ca.cert, **given) as client:
        chat = await client.session(MODEL).start()
        assert (await chat.ask("hi")).message.content
    async with AsyncOllamaClient("127.0.0.1", port, ca=pki.ca.cert) as client:
        with pytest.raises(OlolError) as info:
            await client.session(MODEL).start()
        assert info.value.status == 401


def test_bad_credentials_fail_at_construction(tmp_path: Any, pki: Pki) -> None:
    with pytest.raises(ValueError, match="not found"):
        AsyncOllamaClient(url="https://localhost:1", ca=tmp_path / "missing.crt")
    with pytest.raises(ValueError, match="HTTPS only"):
        AsyncOllamaClient("localhost", 1, ca=pki.ca.cert, verify=False)


# ------------------------------------------------------------------ the CLI
async def _cli(*args: str, env: dict[str, str] | None = None) -> Result:
    runner = CliRunner(env={"COLUMNS": "200", "OLOL_API_KEY": "", "OLOL_TOKEN": "", "OLOL_CA": "", **(env or {})})
    return await asyncio.to_thread(runner.invoke, app, list(args))


async def test_cli_status_and_models_send_the_api_key(https_proxy: RunningProxy, pki: Pki) -> None:
    ca = str(pki.ca.cert)
    result = await _cli("status", "--url", https_proxy.url, "--api-key", READ, "--ca", ca, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["hosts"]
    result = await _cli("status", "--url", https_proxy.url, "--json", env={"OLOL_API_KEY": READ, "OLOL_CA": ca})
    assert result.exit_code == 0, result.output  # from the environment too
    result = await _cli("status", "--url", https_proxy.url, "--ca", ca)
    assert result.exit_code == 1 and "401" in result.output, result.output
    result = await _cli("models", "--url", https_proxy.url, "--api-key", FULL, "--ca", ca, "--json")
    assert result.exit_code == 0, result.output
    assert MODEL in {m["name"].split(":")[0] for m in json.loads(result.output)["models"]}


async def test_cli_pull_sends_the_api_key(https_proxy: RunningProxy, pki: Pki) -> None:
    ca = str(pki.ca.cert)
    result = await _cli("pull", MODEL, "--url", https_proxy.url, "--api-key", FULL, "--ca", ca, "--json")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines() if line.strip()]
    assert lines[-1]["status"] == "success", result.output
    result = await _cli("pull", MODEL, "--url", https_proxy.url, "--api-key", READ, "--ca", ca, "--json")
    assert result.exit_code == 1 and "read-only" in result.output, result.output


async def test_cli_client_to_an_agent_and_to_the_proxy(
    tls_agent: RunningAgent, https_proxy: RunningProxy, pki: Pki
) -> None:
    ca = str(pki.ca.cert)
    host, port = tls_agent.target.rsplit(":", 1)
    prompt = ["--model", MODEL, "--prompt", "hi", "--no-stream"]
    result = await _cli("client", "--host", host, "--port", port, "--ca", ca, *prompt, env={"OLOL_TOKEN": TOKEN})
    assert result.exit_code == 0, result.output
    result = await _cli("client", "--host", host, "--port", port, "--token", WRONG_TOKEN, "--ca", ca, *prompt)
    assert result.exit_code == 1 and "invalid cluster token" in result.output, result.output
    result = await _cli("client", "--url", https_proxy.url, "--api-key", FULL, "--ca", ca, *prompt)
    assert result.exit_code == 0, result.output
    result = await _cli("client", "--url", https_proxy.url, "--ca", ca, *prompt)
    assert result.exit_code == 1 and "API key" in result.output, result.output
