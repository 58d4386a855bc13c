"""Session tests' shared pieces: HTTP calls to `/api/sessions`, the proxy as a real process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.ollama_sim import OllamaSim

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL = "llama3.2"


async def create(http: aiohttp.ClientSession, url: str, model: str = MODEL, **fields: Any) -> dict[str, Any]:
    async with http.post(url + "/api/sessions", json={"model": model, **fields}) as r:
        body = await r.json()
        assert r.status == 200, body
        return dict(body)


async def say(
    http: aiohttp.ClientSession, url: str, session_id: str, text: str, **fields: Any
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """One streamed turn: its NDJSON lines and the reply headers."""
    async with http.post(
        f"{url}/api/sessions/{session_id}/chat", json={"message": {"role": "user", "content": text}, **fields}
    ) as r:
        raw = await r.read()
        assert r.status == 200, raw
        return [json.loads(line) for line in raw.splitlines() if line.strip()], dict(r.headers)


def reply_text(lines: list[dict[str, Any]]) -> str:
    return "".join(line.get("message", {}).get("content", "") for line in lines)


async def get(http: aiohttp.ClientSession, url: str, session_id: str) -> dict[str, Any]:
    async with http.get(f"{url}/api/sessions/{session_id}") as r:
        body = await r.json()
        assert r.status == 200, body
        return dict(body)


def chats_seen(sim: OllamaSim) -> list[list[dict[str, Any]]]:
    """The `messages` of every /api/chat the sim was sent, as role/content pairs."""
    return [
        [{"role": m["role"], "content": m["content"]} for m in r.body["messages"]]
        for r in sim.request_log
        if r.path == "/api/chat"
    ]


def transcript(session: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": m["role"], "content": m["content"]} for m in session["messages"]]


class ProxyProcess:
    """`python -m olol proxy` as a child process: the way to SIGKILL a proxy for real."""

    def __init__(self, proc: asyncio.subprocess.Process, url: str) -> None:
        self.proc = proc
        self.url = url

    @classmethod
    async def start(
        cls, servers: list[str], state_dir: Path, *extra: str, probe_interval: float = 0.2, timeout: float = 30.0
    ) -> ProxyProcess:
        argv = [
            sys.executable,
            "-m",
            "olol",
            "proxy",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--servers",
            ",".join(servers),
            "--state-dir",
            str(state_dir),
            "--probe-interval",
            str(probe_interval),
            "--log-level",
            "warning",
            *extra,
        ]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH")])),
        }
        proc = await asyncio.create_subprocess_exec(*argv, cwd=REPO_ROOT, env=env, stdout=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        try:
            # The proxy prints `READY host:port` once it listens (the port it took for --port 0).
            line = (await asyncio.wait_for(proc.stdout.readline(), timeout)).decode().strip()
        except BaseException:
            proc.kill()
            await proc.wait()
            raise
        if not line.startswith("READY "):
            proc.kill()
            await proc.wait()
            raise RuntimeError(f"proxy did not start (exit {proc.returncode}): {line!r}")
        return cls(proc, "http://" + line.split(" ", 1)[1])

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
        await self.proc.wait()
