"""`/api/sessions` over the Ollama simulator: the model sees the whole conversation, replies are Ollama's."""

from __future__ import annotations

import asyncio

import aiohttp
import ollama
import pytest

from tests.proxy.helpers import proxy_over
from tests.sessions.helpers import MODEL, chats_seen, create, get, reply_text, say, transcript
from tests.support.ollama_sim import OllamaSim


async def test_multi_turn_conversation_sends_the_whole_history(ollama_sim: OllamaSim) -> None:
    async with proxy_over(ollama_sim) as proxy, aiohttp.ClientSession() as http:
        session = await create(http, proxy.url, system="You are terse.", options={"temperature": 0})
        assert session["messages"] == [{**session["messages"][0], "role": "system", "content": "You are terse."}]
        replies = []
        for question in ("What is 2+2?", "And times 3?", "Say it in French."):
            lines, headers = await say(http, proxy.url, session["id"], question)
            assert all(not line["done"] for line in lines[:-1]) and lines[-1]["done"]
            assert lines[-1]["olol"]["session"] == session["id"] and lines[-1]["olol"]["trimmed"] == 0
            assert headers["X-OLOL-Session"] == session["id"] and headers["X-OLOL-Trimmed"] == "0"
            replies.append(reply_text(lines))
        stored = await get(http, proxy.url, session["id"])

    expected = [{"role": "system", "content": "You are terse."}]
    for question, answer in zip(("What is 2+2?", "And times 3?", "Say it in French."), replies, strict=True):
        expected += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    assert transcript(stored) == expected
    # What the model saw on each turn: everything before it, then the new question.
    seen = chats_seen(ollama_sim)
    assert seen == [expected[:2], expected[:4], expected[:6]]
    assert all(r.body["options"] == {"temperature": 0} for r in ollama_sim.request_log if r.path == "/api/chat")
    assert stored["message_count"] == 7 and stored["host"] == ollama_sim.url


async def test_history_records_timestamps_tokens_and_durations(ollama_sim: OllamaSim) -> None:
    async with proxy_over(ollama_sim) as proxy, aiohttp.ClientSession() as http:
        session = await create(http, proxy.url)
        lines, _ = await say(http, proxy.url, session["id"], "one two three")
        stored = await get(http, proxy.url, session["id"])
    user, assistant = stored["messages"]
    final = lines[-1]
    assert assistant["tokens"] == final["eval_count"] and assistant["tokens_estimated"] is False
    assert assistant["duration"] == final["eval_duration"] > 0
    # The whole prompt was this one message, so the backend's count is its count.
    assert user["tokens"] == final["prompt_eval_count"] == 3 and user["tokens_estimated"] is False
    assert user["duration"] == final["prompt_eval_duration"]
    assert user["created_at"] < assistant["created_at"] <= stored["updated_at"]
    assert stored["tokens"] == user["tokens"] + assistant["tokens"]


async def test_stream_false_returns_one_ollama_object(ollama_sim: OllamaSim) -> None:
    async with proxy_over(ollama_sim) as proxy, aiohttp.ClientSession() as http:
        session = await create(http, proxy.url)
        async with http.post(
            f"{proxy.url}/api/sessions/{session['id']}/chat", json={"message": "hello", "stream": False}
        ) as r:
            assert r.status == 200 and r.content_type == "application/json"
            reply = await r.json()
        stored = await get(http, proxy.url, session["id"])
    assert reply["done"] and reply["message"]["role"] == "assistant" and reply["message"]["content"]
    assert reply["olol"]["session"] == session["id"]
    assert transcript(stored)[-1] == {"role": "assistant", "content": reply["message"]["content"]}


async def test_turn_options_format_and_keep_alive_reach_the_model(ollama_sim: OllamaSim) -> None:
    async with proxy_over(ollama_sim) as proxy, aiohttp.ClientSession() as http:
        session = await create(http, proxy.url, options={"temperature": 0.1, "seed": 7}, keep_alive="10m")
        await say(http, proxy.url, session["id"], "json please", format="json", options={"temperature": 0.5})
    body = next(r.body for r in ollama_sim.request_log if r.path == "/api/chat")
    assert body["options"] == {"temperature": 0.5, "seed": 7}
    assert body["format"] == "json" and body["keep_alive"] == "10m"


async def test_list_get_delete(ollama_sim: OllamaSim) -> None:
    async with proxy_over(ollama_sim) as proxy, aiohttp.ClientSession() as http:
        a = await create(http, proxy.url)
        b = await create(http, proxy.url, model="qwen3:0.6b")
        await say(http, proxy.url, a["id"], "hi")
        async with http.get(proxy.url + "/api/sessions") as r:
            listed = (await r.json())["sessions"]
        assert [s["id"] for s in listed] == [a["id"], b["id"]]  # most recently active first
        assert "messages" not in listed[0] and listed[0]["message_count"] == 2
        async with http.get(proxy.url + "/api/sessions?model=qwen3:0.6b") as r:
            assert [s["id"] for s in (await r.json())["sessions"]] == [b["id"]]
        async with http.delete(f"{proxy.url}/api/sessions/{a['id']}") as r:
            assert r.status == 200
        async with http.get(f"{proxy.url}/api/sessions/{a['id']}") as r:
            assert r.status == 404 and await r.json() == {"error": f'session "{a["id"]}" not found'}
        async with http.delete(f"{proxy.url}/api/sessions/{a['id']}") as r:
            assert r.status == 404


async def test_errors_are_ollama_shaped(ollama_sim: OllamaSim) -> None:
    async with proxy_over(ollama_sim) as proxy, aiohttp.ClientSession() as http:

        async def post(path: str, body: object) -> tuple[int, dict[str, str]]:
            async with http.post(proxy.url + path, json=body) as r:
                return r.status, await r.json()

        assert await post("/api/sessions", {}) == (400, {"error": "model is required"})
        assert await post("/api/sessions", {"model": "nope"}) == (
            404,
            {"error": 'model "nope" not found, try pulling it first'},
        )
        session = await create(http, proxy.url)
        path = f"/api/sessions/{session['id']}/chat"
        assert (await post(path, {}))[0] == 400
        assert (await post(path, {"message": {"role": "assistant", "content": "x"}}))[0] == 400
        assert await post("/api/sessions/missing/chat", {"message": "hi"}) == (
            404,
            {"error": 'session "missing" not found'},
        )
        # A failed request leaves the history untouched.
        assert (await get(http, proxy.url, session["id"]))["message_count"] == 0


async def test_concurrent_turns_of_one_session_take_turns(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    sim = await ollama_sim_factory(parallel=4, latency=0.05)
    async with proxy_over(sim, default_parallel=4) as proxy, aiohttp.ClientSession() as http:
        session = await create(http, proxy.url)
        await asyncio.gather(*(say(http, proxy.url, session["id"], f"q{i}") for i in range(4)))
        stored = await get(http, proxy.url, session["id"])
    roles = [m["role"] for m in stored["messages"]]
    assert roles == ["user", "assistant"] * 4  # never two questions in a row
    # Each turn saw every completed turn before it: the prompts grow by one turn each time.
    assert sorted(len(m) for m in chats_seen(sim)) == [1, 3, 5, 7]
    assert sim.max_in_flight == 1


async def test_a_turn_that_breaks_is_not_recorded(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    sim = await ollama_sim_factory()
    async with proxy_over(sim) as proxy, aiohttp.ClientSession() as http:
        session = await create(http, proxy.url)
        await say(http, proxy.url, session["id"], "fine")
        sim.fail_after_tokens = 3
        lines, _ = await say(http, proxy.url, session["id"], "this one fails")
        assert "error" in lines[-1]
        sim.fail_after_tokens = None
        await say(http, proxy.url, session["id"], "again")
        stored = await get(http, proxy.url, session["id"])
    assert [m["content"] for m in stored["messages"] if m["role"] == "user"] == ["fine", "again"]
    assert [m["content"] for m in chats_seen(sim)[-1]][:2] == ["fine", transcript(stored)[1]["content"]]


async def test_seeded_history_and_the_session_header_share_a_host(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    sims = await ollama_sim_factory.many(3)
    async with proxy_over(*sims) as proxy, aiohttp.ClientSession() as http:
        seed = [{"role": "user", "content": "earlier"}, {"role": "assistant", "content": "reply"}]
        session = await create(http, proxy.url, messages=seed)
        _, headers = await say(http, proxy.url, session["id"], "now")
        # A plain /api/chat with X-OLOL-Session: <id> is the same conversation to the router.
        async with http.post(
            proxy.url + "/api/chat",
            headers={"X-OLOL-Session": session["id"]},
            json={"model": MODEL, "messages": seed, "stream": False},
        ) as r:
            assert r.headers["X-OLOL-Host"] == headers["X-OLOL-Host"]
    served = next(s for s in sims if s.url == headers["X-OLOL-Host"])
    assert [m["content"] for m in chats_seen(served)[0]] == ["earlier", "reply", "now"]


async def test_client_gone_mid_turn_stops_the_host_and_frees_the_session(ollama_sim_factory) -> None:  # type: ignore[no-untyped-def]
    sim = await ollama_sim_factory(token_rate=20)  # 16 tokens: most of a second
    async with proxy_over(sim) as proxy, aiohttp.ClientSession() as http:
        session = await create(http, proxy.url)
        async with http.post(f"{proxy.url}/api/sessions/{session['id']}/chat", json={"message": "long one"}) as r:
            await r.content.readline()  # the reply has started ...
        # ... and the client hung up: the host stops generating, the turn is not recorded.
        for _ in range(200):
            if sim.cancelled_streams:
                break
            await asyncio.sleep(0.01)
        assert sim.cancelled_streams == 1
        sim.token_rate = None
        lines, _ = await asyncio.wait_for(say(http, proxy.url, session["id"], "short one"), 5)
        stored = await get(http, proxy.url, session["id"])
    assert lines[-1]["done"]
    assert [m["content"] for m in stored["messages"] if m["role"] == "user"] == ["short one"]


async def test_official_ollama_client_uses_a_session_as_its_host(ollama_sim: OllamaSim) -> None:
    async with proxy_over(ollama_sim) as proxy, aiohttp.ClientSession() as http:
        session = await create(http, proxy.url, system="sys")
        client = ollama.AsyncClient(host=f"{proxy.url}/api/sessions/{session['id']}")
        first = await client.chat(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        stream = await client.chat(model=MODEL, messages=[{"role": "user", "content": "more"}], stream=True)
        second = "".join([part.message.content async for part in stream])
        with pytest.raises(ollama.ResponseError) as err:  # another model is another conversation
            await client.chat(model="qwen3:0.6b", messages=[{"role": "user", "content": "x"}])
        assert err.value.status_code == 400
        with pytest.raises(ollama.ResponseError) as err:  # the history is the proxy's to send
            await client.chat(
                model=MODEL, messages=[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
            )
        assert err.value.status_code == 400
        stored = await get(http, proxy.url, session["id"])
    assert first.done and first.message.content and second
    assert transcript(stored) == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": first.message.content},
        {"role": "user", "content": "more"},
        {"role": "assistant", "content": second},
    ]
    assert chats_seen(ollama_sim)[-1] == transcript(stored)[:-1]
