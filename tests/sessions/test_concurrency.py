"""1,000 sessions created at once against a durable proxy process: none lost, none mixed up."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.sessions.helpers import ProxyProcess, create, get, reply_text, say, transcript

N = 1000


async def _ask(http: aiohttp.ClientSession, host: str, session: dict[str, Any]) -> str:
    async with http.post(
        host + "/api/chat", json={"model": "llama3.2", "messages": transcript(session)[:2], "stream": False}
    ) as r:
        return str((await r.json())["message"]["content"])


async def test_thousand_concurrent_sessions(ollama_sim_process, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Hosts in processes of their own: this test's loop is busy enough being 1,000 clients.
    sims = [await ollama_sim_process(models=["llama3.2"], parallel=64, response_tokens=4) for _ in range(4)]
    proxy = await ProxyProcess.start(
        [s.url for s in sims], tmp_path, "--default-parallel", "64", "--max-queue", str(2 * N), probe_interval=1.0
    )
    try:
        # No client-side connection cap: all 1,000 requests really are in flight together.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            started = time.perf_counter()
            created = await asyncio.gather(*(create(http, proxy.url, system=f"session {n}") for n in range(N)))
            create_s = time.perf_counter() - started
            ids = [c["id"] for c in created]
            assert len(set(ids)) == N

            started = time.perf_counter()
            turns = await asyncio.gather(*(say(http, proxy.url, sid, f"marker {n}") for n, sid in enumerate(ids)))
            chat_s = time.perf_counter() - started

            started = time.perf_counter()
            async with http.get(proxy.url + "/api/sessions") as r:
                listed = (await r.json())["sessions"]
            list_s = time.perf_counter() - started
            stored = await asyncio.gather(*(get(http, proxy.url, sid) for sid in ids))
            # A host's reply is a function of the conversation it was sent: asking one directly for
            # a sample of the conversations must give back exactly the replies those sessions stored.
            direct = await asyncio.gather(*(_ask(http, sims[n % 4].url, stored[n]) for n in range(0, N, 20)))
    finally:
        await proxy.stop()

    assert sorted(s["id"] for s in listed) == sorted(ids)
    for n, (session, (lines, headers)) in enumerate(zip(stored, turns, strict=True)):
        assert headers["X-OLOL-Session"] == ids[n] and lines[-1]["olol"]["session"] == ids[n]
        assert transcript(session) == [
            {"role": "system", "content": f"session {n}"},
            {"role": "user", "content": f"marker {n}"},
            {"role": "assistant", "content": reply_text(lines)},
        ]
    assert direct == [stored[n]["messages"][2]["content"] for n in range(0, N, 20)]
    assert len({s["host"] for s in stored}) == 4  # spread over every host
    print(
        f"\n{N} sessions: created concurrently in {create_s:.2f} s ({N / create_s:.0f}/s), "
        f"one turn each concurrently in {chat_s:.2f} s, listed in {list_s * 1000:.0f} ms"
    )
