"""The official npm `ollama` client works unchanged against the proxy: every public method of its
`Ollama` class (tests/compat/npm_ollama_check.mjs lists them, and the two it leaves out and why),
over every topology of the compatibility matrix (tests/compat/conftest.py)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path
from typing import Any

from tests.compat.conftest import Topology

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("npm_ollama_check.mjs")


def _node_ready() -> bool:
    return shutil.which("node") is not None and (ROOT / "node_modules" / "ollama").is_dir()


def _failed(got: Any) -> bool:
    """The script records a call that threw as {error, status, name}."""
    return isinstance(got, dict) and "error" in got and "status" in got


async def _run(topology: Topology) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        "node", str(SCRIPT), topology.url, topology.chat, topology.embed, topology.pull, topology.manage,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=180)
    assert proc.returncode == 0, err.decode()
    # The client prints its own notes on stdout ("Getting text from response"): the result is the last line.
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def test_npm_ollama_client_against_the_proxy(topology: Topology) -> None:
    # scripts/test.sh runs `npm install` before the suite; without it this test cannot run at all.
    assert _node_ready(), "node and node_modules/ollama are needed: run `npm install` (scripts/test.sh does)"
    r = await _run(topology)
    expected_errors = {"delete_missing", "show_missing", "systemone", "missing"}
    assert not {k: v for k, v in r.items() if k not in expected_errors and _failed(v)}, r

    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", r["version"]["version"]), r["version"]
    assert r["chat"]["done"] and r["chat"]["content"] and r["chat"]["eval_count"] > 0
    assert r["chat"]["role"] == "assistant"
    assert r["chat_stream"]["done"] and r["chat_stream"]["content"]
    assert r["chat_stream"]["done_reason"] in ("stop", "length")
    assert r["generate"]["done"] and r["generate"]["eval_count"] == 5 and r["generate"]["response"]
    assert r["generate_stream"]["done"] and r["generate_stream"]["response"]
    assert r["generate_stream"]["eval_count"] == 5

    assert r["list"]["complete"]
    assert {f"{topology.chat}:latest", f"{topology.embed}:latest"} <= set(r["list"]["names"])
    show = r["show"]
    assert show["format"] == "gguf" and show["family"] == show["parameter_size"] == "string"
    assert show["model_info"] and show["architecture"] and "completion" in show["capabilities"]
    assert "FROM " in show["modelfile"]
    running = [m for m in r["ps"] if m["name"].startswith(topology.chat)]
    assert running, r["ps"]
    for m in running:  # Ollama's ProcessModelResponse: a size, a VRAM share of it, an RFC 3339 expiry
        assert m["size"] > 0 and 0 <= m["size_vram"] <= m["size"] and m["details"] == "object"
        assert m["expires_ms"] is not None, m["expires_at"]

    assert r["embed"] == {"count": 2, "dim": topology.dim}
    assert r["embeddings"] == topology.dim
    assert "pulling manifest" in r["pull_stream"] and r["pull_stream"][-1] == "success"
    assert r["pull"]["status"] == "success"  # and the proxy's `olol` report beside it

    # Management goes to an Ollama host in every topology (llama: the simulator agent).
    assert r["copy"]["reply"] == {"status": "success"} and "npm-copy:latest" in r["copy"]["names"]
    assert r["create_stream"][-1] == "success"
    assert r["show_created"] == "Be brief."
    assert r["push"]["status"] == "success" and r["push_stream"][-1] == "success"
    assert r["delete"]["replies"] == [{"status": "success"}] * 2
    assert not {"npm-copy:latest", "npm-brief:latest"} & set(r["delete"]["names"])
    assert r["delete_missing"]["status"] == 404 and "model 'npm-copy' not found" in r["delete_missing"]["error"]
    assert r["show_missing"]["status"] == 404
    assert "model 'does-not-exist' not found" in r["show_missing"]["error"]

    assert r["encodeImage"] == "AQID"
    # Lines already received may still come out of the client's buffer; the stream never reaches `done`.
    assert r["abort"]["error"] == "AbortError" and 1 <= r["abort"]["parts"] <= 64, r["abort"]
    assert r["after_abort"]["done"] and r["after_abort"]["eval_count"] > 0
    assert r["systemone"]["status"] == 404, r["systemone"]
    assert r["missing"]["status"] == 404
    assert "model 'does-not-exist' not found" in r["missing"]["error"]
