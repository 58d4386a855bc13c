"""`olol rpc-server` and `olol dist` from the command line, against real workers."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

import psutil
import pytest
import typer
from typer.testing import CliRunner, Result

from olol.cli import dist as dist_cmd
from olol.split.workers import RemoteWorker
from tests.split.conftest import N_PREDICT, PROMPT, TOKEN, RpcFactory

pytestmark = pytest.mark.slow

MIB = 1 << 20


def app() -> typer.Typer:
    cli = typer.Typer()
    dist_cmd.register(cli)

    @cli.callback()
    def _group() -> None:
        pass

    return cli


async def olol_dist(*args: str) -> Result:
    """Run `olol dist ARGS` in a thread (it runs its own event loop) while the workers serve on ours."""
    env = {"COLUMNS": "200", "OLOL_TOKEN": TOKEN}
    return await asyncio.to_thread(CliRunner().invoke, app(), ["dist", *args], env=env)


async def test_plan_only_and_one_prompt(rpc_server: RpcFactory, tiny_model: Path, baseline_text: str) -> None:
    servers = [await rpc_server(), await rpc_server()]
    common = ["--servers", ",".join(s.target for s in servers), "--model", str(tiny_model), "--ctx-size", "512"]

    # Equal workers that each hold the whole model: by latency (the default), one of them is enough.
    plan = await olol_dist(*common, "--plan-only")
    assert plan.exit_code == 0, plan.output
    assert "tiny.gguf: 4 layers + output" in plan.output
    assert f"--tensor-split 5 over {servers[0].target};" in plan.output
    assert "objective latency: time per token unknown" in plan.output  # these workers skip the speed test
    plan = await olol_dist(*common, "--plan-only", "--objective", "balanced")
    assert plan.exit_code == 0, plan.output
    assert f"--tensor-split 4,1 over {servers[0].target}, {servers[1].target}" in plan.output
    assert "0-3" in plan.output and "4-3 + output" not in plan.output and "- + output" in plan.output
    assert "objective balanced: " in plan.output

    run = await olol_dist(*common, "--prompt", PROMPT, "-n", str(N_PREDICT), "--temperature", "0", "-t", "1")
    assert run.exit_code == 0, run.output
    assert run.stdout.startswith(baseline_text)


async def test_errors_are_reported_with_their_cause(rpc_server: RpcFactory, tiny_model: Path) -> None:
    small = await rpc_server(memory_limit=4 * MIB)
    short = await olol_dist("--servers", small.target, "--model", str(tiny_model), "--plan-only")
    assert short.exit_code == 1 and "cannot split tiny.gguf" in short.output and "short" in short.output
    missing = await olol_dist("--servers", small.target, "--model", "no-such-model:7b", "--plan-only")
    assert missing.exit_code == 2 and "neither a file nor an Ollama model" in missing.output
    nobody = await olol_dist("--servers", ",", "--model", str(tiny_model), "--plan-only")
    assert nobody.exit_code == 2 and "no rpc-servers given" in nobody.output


async def test_rpc_server_process_flags_and_cleanup(llama_bins: object) -> None:
    """The real command line: flags reach the service, and a SIGKILLed rpc-server takes its worker along."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "olol.rpc", "--host", "127.0.0.1", "--port", "0", "-t", "1", "--token", TOKEN,
        "--no-speed-test", "--max-memory", "64MiB", "--context-window", "1024", "--quantize", "q8_0",
        "--flash-attention", "--log-level", "warning",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        m = re.match(r"READY 127\.0\.0\.1:(\d+) worker=127\.0\.0\.1:(\d+)", line)
        assert m, line
        worker = RemoteWorker(f"127.0.0.1:{m[1]}", token=TOKEN)
        caps = await worker.capabilities()
        await worker.close()
        assert caps.threads == 1 and caps.devices[0].name == "CPU" and caps.devices[0].free_bytes == 64 * MIB
        assert (caps.context_window, caps.quantize, caps.flash_attention) == (1024, "q8_0", True)
        # The worker runs in a network namespace of its own: nothing can dial it directly (issue 20).
        assert caps.protocol_version == "7.0.0" and caps.direct_endpoint == ""
        workers = [p for p in psutil.Process(proc.pid).children(recursive=True) if "ggml-rpc" in " ".join(p.cmdline())]
        assert workers
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive  # no unauthenticated worker left listening
