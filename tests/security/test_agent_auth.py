"""The cluster token on every gRPC call: strangers are refused, members are served, over both transports."""

from __future__ import annotations

import grpc
import pytest

from olol.backends.agent import AgentBackend
from olol.backends.ollama.backend import OllamaBackend
from olol.errors import OlolError
from olol.proto import pb, rpc
from olol.security.grpc_auth import CHALLENGE_KEY, verify_proof
from olol.security.settings import SecuritySettings
from olol.wire.status import protocol_metadata
from tests.proxy.helpers import proxy_over
from tests.security.conftest import TOKEN, WRONG_TOKEN
from tests.support.ollama_sim import OllamaSim


async def _agent(agent_factory, sim: OllamaSim, token: str | None = TOKEN):  # type: ignore[no-untyped-def]
    return await agent_factory(OllamaBackend(sim.url), security=SecuritySettings(token=token))


@pytest.mark.parametrize("presented", [None, WRONG_TOKEN, TOKEN[:-1], TOKEN + "x", ""])
async def test_calls_without_the_token_are_refused(agent_factory, ollama_sim, presented) -> None:  # type: ignore[no-untyped-def]
    agent = await _agent(agent_factory, ollama_sim)
    stranger = AgentBackend(agent.target, token=presented)
    try:
        with pytest.raises(OlolError) as info:
            await stranger.list_models()
        assert info.value.status == 401
        with pytest.raises(OlolError) as info:  # streams too, before the backend is touched
            async for _ in stranger.generate({"model": "llama3.2", "prompt": "hi"}):
                pass
        assert info.value.status == 401
        assert await stranger.healthy() is False
        assert ollama_sim.requests["/api/generate"] == 0
    finally:
        await stranger.close()


async def test_calls_with_the_token_are_served(agent_factory, ollama_sim) -> None:  # type: ignore[no-untyped-def]
    agent = await _agent(agent_factory, ollama_sim)
    member = AgentBackend(agent.target, token=TOKEN)
    try:
        assert "llama3.2:latest" in [m["name"] for m in await member.list_models()]
        chunks = [c async for c in member.generate({"model": "llama3.2", "prompt": "hi"})]
        assert chunks[-1]["done"] is True
    finally:
        await member.close()


async def test_no_token_keeps_todays_open_behaviour(agent_factory, ollama_sim) -> None:  # type: ignore[no-untyped-def]
    agent = await _agent(agent_factory, ollama_sim, token=None)
    anyone = AgentBackend(agent.target, token=WRONG_TOKEN)  # a token nobody checks is harmless
    try:
        assert await anyone.healthy()
    finally:
        await anyone.close()


async def test_proxy_with_the_token_serves_and_with_a_wrong_one_sees_the_host_down(  # type: ignore[no-untyped-def]
    agent_factory, ollama_sim
) -> None:
    agent = await _agent(agent_factory, ollama_sim)
    async with proxy_over(agent.target, security=SecuritySettings(token=TOKEN)) as proxy:
        host = proxy.context.cluster.hosts[agent.target]
        assert host.healthy and host.has_model("llama3.2")
    async with proxy_over(agent.target, security=SecuritySettings(token=WRONG_TOKEN)) as proxy:
        host = proxy.context.cluster.hosts[agent.target]
        assert not host.healthy and "token" in host.last_error


async def test_a_refusal_answers_a_challenge_with_a_proof_bound_to_the_agents_address(  # type: ignore[no-untyped-def]
    agent_factory, ollama_sim
) -> None:
    agent = await _agent(agent_factory, ollama_sim)
    channel = grpc.aio.insecure_channel(agent.target)
    stub = rpc.HostStub(channel)  # type: ignore[no-untyped-call]
    try:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Version(pb.Empty(), metadata=(*protocol_metadata(), (CHALLENGE_KEY, "nonce-1")))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        trailing = info.value.trailing_metadata()
        assert verify_proof(TOKEN, "nonce-1", trailing, "127.0.0.1")
        # The proof says nothing to someone without the token, fits one challenge, and one address only.
        assert not verify_proof(WRONG_TOKEN, "nonce-1", trailing, "127.0.0.1")
        assert not verify_proof(TOKEN, "nonce-2", trailing, "127.0.0.1")
        assert not verify_proof(TOKEN, "nonce-1", trailing, "10.9.9.9")  # a relay at another address
    finally:
        await channel.close(grace=None)
