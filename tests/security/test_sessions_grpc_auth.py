"""The proxy's sessions gRPC port (`--grpc-port`) is no side door: the cluster token or an API key, and TLS.

Raw stubs here, so each refusal's gRPC code is what is checked; the Python
clients over the same port are in test_client_credentials.py.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from olol.proto import sessions_grpc as rpc
from olol.proto import sessions_pb as pb
from olol.proxy import RunningProxy
from olol.security.apikeys import ApiKeys
from olol.security.settings import SecuritySettings
from olol.security.tls import TlsFiles
from olol.wire.status import protocol_metadata
from tests.proxy.helpers import proxy_over
from tests.security.conftest import TOKEN, WRONG_TOKEN, Pki
from tests.sessions.helpers import MODEL
from tests.support.ollama_sim import OllamaSim

FULL, READ = "f" * 24, "r" * 24
OK = grpc.StatusCode.OK


def _port(proxy: RunningProxy) -> int:
    assert proxy.context.sessions is not None and proxy.context.sessions.grpc_port
    return proxy.context.sessions.grpc_port


def _bearer(secret: str) -> tuple[str, str]:
    return ("authorization", f"Bearer {secret}")


async def _create(channel: grpc.aio.Channel, *auth: tuple[str, str]) -> grpc.StatusCode:
    generated: Any = rpc  # generated code is untyped
    stub = generated.SessionsStub(channel)
    try:
        await stub.CreateSession(
            pb.CreateSessionRequest(model=MODEL), metadata=(*protocol_metadata(), *auth), timeout=10
        )
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return OK


async def _chat(channel: grpc.aio.Channel, *auth: tuple[str, str]) -> grpc.StatusCode:
    generated: Any = rpc  # generated code is untyped
    stub = generated.SessionsStub(channel)
    try:
        async for _ in stub.ChatMessage(
            pb.ChatMessageRequest(session_id="nope"), metadata=(*protocol_metadata(), *auth), timeout=10
        ):
            pass
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return OK


async def test_the_cluster_token_is_required_when_set(ollama_sim: OllamaSim) -> None:
    async with (
        proxy_over(ollama_sim, grpc_port=0, security=SecuritySettings(token=TOKEN)) as proxy,
        grpc.aio.insecure_channel(f"127.0.0.1:{_port(proxy)}") as channel,
    ):
        assert await _create(channel) == grpc.StatusCode.UNAUTHENTICATED
        assert await _create(channel, _bearer(WRONG_TOKEN)) == grpc.StatusCode.UNAUTHENTICATED
        assert await _chat(channel) == grpc.StatusCode.UNAUTHENTICATED  # streams are guarded too
        assert await _create(channel, _bearer(TOKEN)) == OK
        # Past the guard, a stream reaches the service, which refuses this empty message itself.
        assert await _chat(channel, _bearer(TOKEN)) == grpc.StatusCode.INVALID_ARGUMENT


async def test_with_api_keys_a_full_key_or_the_token_is_accepted(ollama_sim: OllamaSim) -> None:
    security = SecuritySettings(token=TOKEN, api_keys=ApiKeys.parse([FULL, f"{READ}:read"]))
    async with (
        proxy_over(ollama_sim, grpc_port=0, security=security) as proxy,
        grpc.aio.insecure_channel(f"127.0.0.1:{_port(proxy)}") as channel,
    ):
        assert await _create(channel) == grpc.StatusCode.UNAUTHENTICATED
        assert await _create(channel, _bearer(WRONG_TOKEN)) == grpc.StatusCode.UNAUTHENTICATED
        assert await _create(channel, _bearer(READ)) == grpc.StatusCode.PERMISSION_DENIED
        assert await _create(channel, _bearer(FULL)) == OK
        assert await _create(channel, _bearer(TOKEN)) == OK


async def test_no_token_and_no_keys_keeps_it_open(ollama_sim: OllamaSim) -> None:
    async with (
        proxy_over(ollama_sim, grpc_port=0) as proxy,
        grpc.aio.insecure_channel(f"127.0.0.1:{_port(proxy)}") as channel,
    ):
        assert await _create(channel) == OK


@pytest.mark.parametrize("client_auth", [False, True])
async def test_tls_when_the_proxy_serves_https(ollama_sim: OllamaSim, pki: Pki, client_auth: bool) -> None:
    security = SecuritySettings(
        token=TOKEN, tls=TlsFiles(pki.server.cert, pki.server.key, pki.ca.cert), https_client_auth=client_auth
    )
    async with proxy_over(ollama_sim, grpc_port=0, security=security) as proxy:
        target = f"127.0.0.1:{_port(proxy)}"
        trusting = pki.client_tls(with_cert=False).channel_credentials()
        with_cert = pki.client_tls().channel_credentials()
        assert trusting is not None and with_cert is not None
        async with grpc.aio.insecure_channel(target) as plain:  # no plaintext side door
            assert await _create(plain, _bearer(TOKEN)) == grpc.StatusCode.UNAVAILABLE
        async with grpc.aio.secure_channel(target, with_cert) as channel:
            assert await _create(channel, _bearer(TOKEN)) == OK
            assert await _create(channel) == grpc.StatusCode.UNAUTHENTICATED  # TLS is no substitute for the token
        async with grpc.aio.secure_channel(target, trusting) as channel:
            # A client certificate only when the HTTPS side asks for one too (--https-client-auth).
            expected = grpc.StatusCode.UNAVAILABLE if client_auth else OK
            assert await _create(channel, _bearer(TOKEN)) == expected
