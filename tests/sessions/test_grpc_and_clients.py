"""The gRPC Sessions service and the Python clients (sync and async, over HTTP and over gRPC)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import grpc
import pytest

from olol.aio import AsyncOllamaClient
from olol.errors import BadRequest, ModelNotFound
from olol.proto import sessions_grpc as rpc
from olol.proto import sessions_pb as pb
from olol.proxy import RunningProxy
from olol.sessions import SessionNotFound
from olol.sync import OllamaClient
from olol.wire.status import protocol_metadata
from tests.proxy.helpers import proxy_over
from tests.sessions.helpers import MODEL, chats_seen
from tests.support.ollama_sim import OllamaSim

TRANSPORTS = ["http", "grpc"]


def _target(proxy: RunningProxy, transport: str) -> dict[str, Any]:
    if transport == "http":
        return {"url": proxy.url}
    assert proxy.context.sessions is not None and proxy.context.sessions.grpc_port
    return {"host": "127.0.0.1", "port": proxy.context.sessions.grpc_port}


def _contents(messages: list[Any]) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in messages]


async def test_grpc_service_round_trip(ollama_sim: OllamaSim) -> None:
    async with proxy_over(ollama_sim, grpc_port=0) as proxy:
        port = proxy.context.sessions.grpc_port  # type: ignore[union-attr]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub: Any = rpc.SessionsStub(channel)
            md = protocol_metadata()
            created = await stub.CreateSession(pb.CreateSessionRequest(model=MODEL, system="be brief"), metadata=md)
            sid = created.info.id
            assert created.info.model == MODEL and created.messages[0].message.content == "be brief"
            for text in ("first", "second"):
                chunks = [
                    c
                    async for c in stub.ChatMessage(
                        pb.ChatMessageRequest(session_id=sid, message={"role": "user", "content": text}), metadata=md
                    )
                ]
                final = chunks[-1]
                assert final.chunk.done and final.turn.session_id == sid and final.turn.host == ollama_sim.url
                assert all(not c.chunk.done and not c.HasField("turn") for c in chunks[:-1])
            got = await stub.GetSession(pb.SessionRef(session_id=sid), metadata=md)
            assert [m.message.role for m in got.messages] == ["system", "user", "assistant", "user", "assistant"]
            assert got.messages[2].tokens == 16 and not got.messages[2].tokens_estimated
            listed = await stub.ListSessions(pb.ListSessionsRequest(), metadata=md)
            assert [s.id for s in listed.sessions] == [sid] and listed.sessions[0].message_count == 5
            await stub.DeleteSession(pb.SessionRef(session_id=sid), metadata=md)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetSession(pb.SessionRef(session_id=sid), metadata=md)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            assert ("olol-http-status", "404") in tuple(err.value.trailing_metadata() or ())
    assert [m["content"] for m in chats_seen(ollama_sim)[1]][:3] == [
        "be brief",
        "first",
        got.messages[2].message.content,
    ]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_async_client_session(ollama_sim: OllamaSim, transport: str) -> None:
    async with proxy_over(ollama_sim, grpc_port=0) as proxy, AsyncOllamaClient(**_target(proxy, transport)) as client:
        chat = client.session(MODEL, system="You are a parrot.", options={"seed": 3})
        pieces = [r async for r in chat.chat("Polly?")]
        assert pieces[-1].done and pieces[-1].olol["session"] == chat.id and chat.last_turn["trimmed"] == 0
        answer = await chat.ask({"role": "user", "content": "Again?"})
        assert answer.done and answer.message.content and answer.eval_count == 16
        history = await chat.history()
        assert _contents(history) == [
            ("system", "You are a parrot."),
            ("user", "Polly?"),
            ("assistant", "".join(p.message.content for p in pieces)),
            ("user", "Again?"),
            ("assistant", answer.message.content),
        ]
        assert history[2].tokens == 16 and history[1].created_at
        # Another client resumes the same conversation by id.
        resumed = client.session(MODEL, session_id=chat.id)
        await resumed.ask("Third?")
        info = await chat.info()
        assert info.message_count == 7 and info.options == {"seed": 3}
        await chat.delete()
        with pytest.raises(SessionNotFound):
            await resumed.info()
        with pytest.raises(SessionNotFound):
            await resumed.ask("gone?")
    assert [m["content"] for m in chats_seen(ollama_sim)[2]][-1] == "Third?"
    assert len(chats_seen(ollama_sim)[2]) == 6


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_sync_client_session(ollama_sim: OllamaSim, transport: str) -> None:
    async with proxy_over(ollama_sim, grpc_port=0) as proxy:
        target = _target(proxy, transport)

        def conversation() -> list[tuple[str, str]]:
            with OllamaClient(**target) as client:
                chat = client.session(MODEL)
                assert chat.id  # created eagerly: the blocking client has nothing to wait for later
                streamed = "".join(r.message.content for r in chat.chat("one"))
                assert streamed and chat.last_turn["session"] == chat.id
                assert chat.ask("two").done
                with pytest.raises(ModelNotFound):
                    client.session("no-such-model")
                return _contents(chat.history())

        history = await asyncio.to_thread(conversation)
    assert [role for role, _ in history] == ["user", "assistant", "user", "assistant"]
    assert [m["content"] for m in chats_seen(ollama_sim)[1]] == [text for _, text in history[:3]]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_client_errors_are_typed(ollama_sim: OllamaSim, transport: str) -> None:
    async with proxy_over(ollama_sim, grpc_port=0) as proxy, AsyncOllamaClient(**_target(proxy, transport)) as client:
        with pytest.raises(ModelNotFound):
            await client.session("nope").start()
        chat = await client.session(MODEL).start()
        with pytest.raises(BadRequest):
            await chat.ask({"role": "assistant", "content": "not mine to say"})
        with pytest.raises(SessionNotFound):
            await client.session(MODEL, session_id="unknown").ask("hi")


async def test_grpc_port_requires_the_proxys_api_keys(ollama_sim: OllamaSim) -> None:
    from olol.security.apikeys import ApiKeys
    from olol.security.settings import SecuritySettings

    full, read = "f" * 24, "r" * 24
    security = SecuritySettings(api_keys=ApiKeys.parse([full, f"{read}:read"]))
    async with proxy_over(ollama_sim, grpc_port=0, security=security) as proxy:
        port = proxy.context.sessions.grpc_port  # type: ignore[union-attr]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub: Any = rpc.SessionsStub(channel)

            async def create(*auth: tuple[str, str]) -> grpc.StatusCode:
                try:
                    await stub.CreateSession(
                        pb.CreateSessionRequest(model=MODEL), metadata=(*protocol_metadata(), *auth)
                    )
                except grpc.aio.AioRpcError as exc:
                    return exc.code()
                return grpc.StatusCode.OK

            assert await create() == grpc.StatusCode.UNAUTHENTICATED
            assert await create(("authorization", "Bearer wrong-key-wrong-key")) == grpc.StatusCode.UNAUTHENTICATED
            assert await create(("authorization", f"Bearer {read}")) == grpc.StatusCode.PERMISSION_DENIED
            assert await create(("authorization", f"Bearer {full}")) == grpc.StatusCode.OK
            with pytest.raises(grpc.aio.AioRpcError) as err:  # streaming calls are guarded too
                async for _ in stub.ChatMessage(pb.ChatMessageRequest(session_id="x"), metadata=protocol_metadata()):
                    pass
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        async with aiohttp.ClientSession() as http:  # and so is the HTTP API (the proxy's guard)
            async with http.post(proxy.url + "/api/sessions", json={"model": MODEL}) as r:
                assert r.status == 401
            async with http.post(
                proxy.url + "/api/sessions", json={"model": MODEL}, headers={"Authorization": f"Bearer {full}"}
            ) as r:
                assert r.status == 200
