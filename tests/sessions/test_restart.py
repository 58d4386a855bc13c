"""SIGKILL the proxy mid-conversation, restart it on the same --state-dir, carry on: nothing completed is lost."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.sessions.helpers import ProxyProcess, chats_seen, create, get, reply_text, say, transcript

SESSIONS = 40


async def _talk(http: aiohttp.ClientSession, url: str, sid: str, done: list[dict[str, str]]) -> None:
    """Chat until the proxy dies; `done` gets each turn whose final chunk arrived."""
    i = 0
    while True:
        question = f"{sid[:6]} question {i}"
        try:
            lines, _ = await say(http, url, sid, question)
        except (aiohttp.ClientError, AssertionError):
            return  # the proxy is gone (mid-turn, or between turns)
        if not lines or not lines[-1].get("done"):
            return
        done += [{"role": "user", "content": question}, {"role": "assistant", "content": reply_text(lines)}]
        i += 1


async def test_sigkill_mid_conversation_keeps_every_completed_turn(ollama_sim_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sim = await ollama_sim_factory(token_rate=100, parallel=64)  # 16 tokens: ~0.16 s a reply
    state = tmp_path / "state"
    proxy = await ProxyProcess.start([sim.url], state, "--default-parallel", "64")
    try:
        async with aiohttp.ClientSession() as http:
            ids = [(await create(http, proxy.url, system=f"session {n}"))["id"] for n in range(SESSIONS)]
            acked: dict[str, list[dict[str, str]]] = {sid: [] for sid in ids}
            talkers = [asyncio.create_task(_talk(http, proxy.url, sid, acked[sid])) for sid in ids]
            # Every session has finished three turns and most replies are streaming right now: then the kill.
            async with asyncio.timeout(60):
                while min(len(turns) for turns in acked.values()) < 6 or sim.in_flight < SESSIONS // 2:
                    await asyncio.sleep(0.01)
            in_flight = sim.in_flight
            proxy.kill()
            await asyncio.gather(*talkers)
        await proxy.stop()
        assert proxy.proc.returncode == -9

        started = time.perf_counter()
        proxy = await ProxyProcess.start([sim.url], state, "--default-parallel", "64")
        ready_s = time.perf_counter() - started
        async with aiohttp.ClientSession() as http:
            started = time.perf_counter()
            restored = {sid: await get(http, proxy.url, sid) for sid in ids}
            read_s = time.perf_counter() - started
            completed = sum(len(turns) // 2 for turns in acked.values())
            unacked = 0
            for n, sid in enumerate(ids):
                history = transcript(restored[sid])
                assert history[0] == {"role": "system", "content": f"session {n}"}
                body = history[1:]
                # Every turn a client saw finish is there, in order ...
                assert body[: len(acked[sid])] == acked[sid]
                # ... and at most the one turn that was being recorded as the proxy died, never half a turn.
                assert len(body) - len(acked[sid]) in (0, 2)
                unacked += len(body) > len(acked[sid])
                assert [m["role"] for m in body] == ["user", "assistant"] * (len(body) // 2)

            # The conversation goes on, and the model sees all of it.
            sid = ids[0]
            lines, _ = await say(http, proxy.url, sid, "after the restart")
            assert lines[-1]["done"]
            assert chats_seen(sim)[-1] == [*transcript(restored[sid]), {"role": "user", "content": "after the restart"}]
            async with http.get(proxy.url + "/api/sessions") as r:
                assert len((await r.json())["sessions"]) == SESSIONS
    finally:
        await proxy.stop()
    print(
        f"\nrestart: SIGKILL with {in_flight} replies streaming; {SESSIONS} sessions, {completed} acknowledged turns, "
        f"all recovered ({unacked} more recorded whose final chunk never reached its client); "
        f"restart to READY {ready_s:.2f} s, every history read back in {read_s:.2f} s"
    )


async def test_state_dir_holds_sessions_across_a_clean_restart_too(ollama_sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proxy = await ProxyProcess.start([ollama_sim.url], tmp_path, "--session-ttl", "0")
    try:
        async with aiohttp.ClientSession() as http:
            session: dict[str, Any] = await create(http, proxy.url)
            await say(http, proxy.url, session["id"], "hello")
        await proxy.stop()  # SIGTERM: a graceful shutdown
        assert (tmp_path / "sessions.db").exists()
        proxy = await ProxyProcess.start([ollama_sim.url], tmp_path, "--session-ttl", "0")
        async with aiohttp.ClientSession() as http:
            restored = await get(http, proxy.url, session["id"])
    finally:
        await proxy.stop()
    assert restored["message_count"] == 2 and restored["expires_at"] is None
