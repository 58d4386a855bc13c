"""`olol demo` tells the user where the dashboard is (checked over a simulated host instead of llama.cpp agents)."""

from __future__ import annotations

import asyncio
import re
from types import SimpleNamespace

from olol.cli.demo_run import DemoConfig, _run


async def test_demo_prints_the_dashboard_url(ollama_sim) -> None:  # type: ignore[no-untyped-def]
    said: list[str] = []
    agents = [SimpleNamespace(target=ollama_sim.url)]
    cfg = DemoConfig(port=0, serve=False, prompt="hi")
    await asyncio.wait_for(_run(cfg, agents, "llama3.2", said.append), 60)  # type: ignore[arg-type]
    urls = [m.group(1) for line in said if (m := re.match(r"dashboard on (http://127\.0\.0\.1:\d+/ui/) ", line))]
    assert len(urls) == 1, said
