"""The official npm `ollama` client works unchanged against the proxy (chat, generate, list, pull, embed),
over every topology of the compatibility matrix (tests/compat/conftest.py)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

from tests.compat.conftest import Topology

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("npm_ollama_check.mjs")


def _node_ready() -> bool:
    return shutil.which("node") is not None and (ROOT / "node_modules" / "ollama").is_dir()


async def test_npm_ollama_client_against_the_proxy(topology: Topology) -> None:
    # scripts/test.sh runs `npm install` before the suite; without it this test cannot run at all.
    assert _node_ready(), "node and node_modules/ollama are needed: run `npm install` (scripts/test.sh does)"
    proc = await asyncio.create_subprocess_exec(
        "node", str(SCRIPT), topology.url, topology.chat, topology.embed, topology.pull,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()
    result = json.loads(out)
    assert result["chat"]["done"] and result["chat"]["content"] and result["chat"]["eval_count"] > 0
    assert result["chat_stream"]["done"] and result["chat_stream"]["content"]
    assert result["chat_stream"]["done_reason"] in ("stop", "length")
    assert result["generate"]["done"] and result["generate"]["eval_count"] == 5
    assert f"{topology.chat}:latest" in result["list"] and f"{topology.embed}:latest" in result["list"]
    assert result["embed"] == {"count": 2, "dim": topology.dim}
    assert "pulling manifest" in result["pull"] and result["pull"][-1] == "success"
    assert result["missing"]["status"] == 404
    assert "model 'does-not-exist' not found" in result["missing"]["message"]
