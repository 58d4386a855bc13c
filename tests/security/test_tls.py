"""TLS: `olol certs`, agents over TLS and mutual TLS, the proxy over HTTPS."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import aiohttp
import pytest
import typer
from cryptography import x509
from typer.testing import CliRunner

from olol.backends.agent import AgentBackend
from olol.backends.ollama.backend import OllamaBackend
from olol.cli import certs as certs_cmd
from olol.errors import OlolError
from olol.security.settings import SecuritySettings
from olol.security.tls import TlsFiles
from tests.proxy.helpers import proxy_over
from tests.security.conftest import TOKEN, Pki


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command("noop")(lambda: None)  # a group needs a command of its own for typer to keep `certs` a group
    certs_cmd.register(app)
    return app


def test_certs_command_makes_a_token_a_ca_and_host_certs(tmp_path: Path) -> None:
    runner, app = CliRunner(), _cli()
    out = runner.invoke(app, ["certs", "token", "--out", str(tmp_path / "token")])
    assert out.exit_code == 0, out.output
    assert len((tmp_path / "token").read_text().strip()) >= 40
    assert stat.S_IMODE((tmp_path / "token").stat().st_mode) == 0o600
    assert runner.invoke(app, ["certs", "init", "--dir", str(tmp_path)]).exit_code == 0
    again = runner.invoke(app, ["certs", "init", "--dir", str(tmp_path)])
    assert again.exit_code != 0 and "exists" in again.output  # never overwrites a CA by accident
    made = runner.invoke(
        app, ["certs", "host", "gpu1", "--ip", "10.0.0.2", "--dns", "gpu1.lan", "--dir", str(tmp_path)]
    )
    assert made.exit_code == 0, made.output
    assert stat.S_IMODE((tmp_path / "gpu1.key").stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate((tmp_path / "gpu1.crt").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {"gpu1", "gpu1.lan"}
    assert [str(a) for a in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.2"]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {u.dotted_string for u in usages} == {"1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"}  # server + client
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    missing = runner.invoke(app, ["certs", "host", "x", "--dir", str(tmp_path / "nowhere")])
    assert missing.exit_code != 0 and "olol certs init" in missing.output


async def _tls_agent(agent_factory, sim, pki: Pki, *, mutual: bool):  # type: ignore[no-untyped-def]
    return await agent_factory(
        OllamaBackend(sim.url), security=SecuritySettings(token=TOKEN, tls=pki.server_tls(mutual=mutual))
    )


async def test_agent_over_tls(agent_factory, ollama_sim, pki: Pki) -> None:  # type: ignore[no-untyped-def]
    agent = await _tls_agent(agent_factory, ollama_sim, pki, mutual=False)
    good = AgentBackend(agent.target, token=TOKEN, tls=TlsFiles(ca=pki.ca.cert))
    plaintext = AgentBackend(agent.target, token=TOKEN, timeout=2)
    wrong_ca = AgentBackend(agent.target, token=TOKEN, tls=TlsFiles(ca=pki.stranger_ca.cert), timeout=2)
    try:
        assert await good.healthy()
        for client in (plaintext, wrong_ca):
            with pytest.raises(OlolError):
                await client.list_models()
    finally:
        for client in (good, plaintext, wrong_ca):
            await client.close()


async def test_agent_with_mutual_tls_requires_a_client_cert_of_the_cluster(  # type: ignore[no-untyped-def]
    agent_factory, ollama_sim, pki: Pki
) -> None:
    agent = await _tls_agent(agent_factory, ollama_sim, pki, mutual=True)
    member = AgentBackend(agent.target, token=TOKEN, tls=pki.client_tls())
    no_cert = AgentBackend(agent.target, token=TOKEN, tls=pki.client_tls(with_cert=False), timeout=2)
    foreign = AgentBackend(
        agent.target, token=TOKEN, timeout=2, tls=TlsFiles(pki.stranger.cert, pki.stranger.key, pki.ca.cert)
    )
    try:
        assert await member.healthy()
        for client in (no_cert, foreign):
            with pytest.raises(OlolError):
                await client.list_models()
    finally:
        for client in (member, no_cert, foreign):
            await client.close()


async def test_proxy_serves_https_and_dials_agents_over_mutual_tls(  # type: ignore[no-untyped-def]
    agent_factory, ollama_sim, pki: Pki
) -> None:
    agent = await _tls_agent(agent_factory, ollama_sim, pki, mutual=True)
    proxy_tls = TlsFiles(pki.server.cert, pki.server.key, pki.ca.cert)  # HTTPS cert, client cert and CA in one
    async with proxy_over(agent.target, security=SecuritySettings(token=TOKEN, tls=proxy_tls)) as proxy:
        assert proxy.url.startswith("https://")
        assert proxy.context.cluster.hosts[agent.target].healthy
        trusted = ssl.create_default_context(cafile=str(pki.ca.cert))
        async with aiohttp.ClientSession() as http:
            async with http.post(
                proxy.url + "/api/generate", ssl=trusted, json={"model": "llama3.2", "prompt": "hi", "stream": False}
            ) as resp:
                assert resp.status == 200 and (await resp.json())["done"] is True
            with pytest.raises(aiohttp.ClientConnectorCertificateError):  # a client that trusts only the system roots
                await http.get(proxy.url + "/api/version")
            plain = proxy.url.replace("https://", "http://")
            with pytest.raises(aiohttp.ClientError):  # no plaintext side door
                await http.get(plain + "/api/version")


async def test_https_client_auth_requires_a_client_cert(ollama_sim, pki: Pki) -> None:  # type: ignore[no-untyped-def]
    tls = TlsFiles(pki.server.cert, pki.server.key, pki.ca.cert)
    async with proxy_over(ollama_sim, security=SecuritySettings(tls=tls, https_client_auth=True)) as proxy:
        with_cert = ssl.create_default_context(cafile=str(pki.ca.cert))
        with_cert.load_cert_chain(str(pki.client.cert), str(pki.client.key))
        without = ssl.create_default_context(cafile=str(pki.ca.cert))
        async with aiohttp.ClientSession() as http:
            async with http.get(proxy.url + "/api/version", ssl=with_cert) as resp:
                assert resp.status == 200
            with pytest.raises(aiohttp.ClientError):
                async with http.get(proxy.url + "/api/version", ssl=without) as resp:
                    await resp.read()
