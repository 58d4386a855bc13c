"""An admitted JSON body costs the proxy about twice its size at the peak, and once while it is served (issue 20).

Before, one /api/chat body was held four times over at the peak: aiohttp's bytes, the
decoded text, the parsed object, and the body encoded again for the host (as text, then
bytes, then the bytes behind the request head). Now only two copies ever coexist, for
a moment: the bytes and their text while decoding, the object and its encoding while
sending. Measured as the kernel does, on `olol proxy` in its own process: its VmHWM
(peak resident memory, reset before each body) over its resident memory before.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from pathlib import Path

import aiohttp

from tests.support.sim_fixtures import REPO_ROOT, SimProcessFactory

MiB = 1 << 20
SIZE = 32 * MiB


def _chat(size: int, **extra: object) -> bytes:
    frame = json.dumps({"model": "llama3.2", "messages": [{"role": "user", "content": "@"}], **extra})
    return frame.replace("@", "x" * (size - len(frame))).encode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _memory(pid: int) -> tuple[int, int]:
    """(resident, peak resident) bytes of a process."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


async def _proxy(sim_url: str, state: Path) -> tuple[asyncio.subprocess.Process, str]:
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "olol", "proxy", "--host", "127.0.0.1", "--port", str(port), "--servers", sim_url,
        "--state-dir", str(state), "--log-level", "error", cwd=REPO_ROOT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as http:
        while True:  # ready once it answers and knows the host's model
            try:
                async with http.get(url + "/api/tags") as r:
                    if r.status == 200 and (await r.json())["models"]:
                        return proc, url
            except aiohttp.ClientConnectionError:
                pass
            assert proc.returncode is None and time.monotonic() < deadline, "the proxy did not start"
            await asyncio.sleep(0.1)


async def test_a_large_body_costs_about_twice_its_size_at_the_peak(
    ollama_sim_process: SimProcessFactory, tmp_path: Path
) -> None:
    sim = await ollama_sim_process(models=["llama3.2"], response_tokens=4)
    proxy, url = await _proxy(sim.url, tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            # `stream: false`, then streamed: the first is also streamed upstream (the body changes on its way).
            for body in (_chat(SIZE, stream=False), _chat(SIZE)):
                Path(f"/proc/{proxy.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
                before, _ = _memory(proxy.pid)
                async with http.post(url + "/api/chat", data=body, headers={"Content-Type": "application/json"}) as r:
                    assert r.status == 200
                    await r.read()
                _, peak = _memory(proxy.pid)
                # Two copies at once, plus what serving any request costs (a few MiB).
                assert peak - before < 2.25 * SIZE, f"peak {(peak - before) / SIZE:.2f}x the body's size"
    finally:
        proxy.terminate()
        await asyncio.wait_for(proxy.wait(), 30)
