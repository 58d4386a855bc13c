"""Placing a model on 3 hosts: one registry download plus LAN copies, against three independent pulls.

    python -m bench.bench_placement            # OLOL_BENCH_MODEL_MB=200 (default), OLOL_BENCH_RUNS=3

Scaled down: a 200 MB model instead of 2 GB (the time of both methods is
proportional to size; the ratio is what is measured). Each host is its own
process (a disk-backed Ollama stand-in with the OLOL agent in front), the
proxy and a registry stand-in run here. The registry serves at a capped rate
shared by all hosts (`WAN_RATES`): a site's hosts share one internet link,
which is why N independent pulls take N times as long as one. The LAN is this
machine's loopback, uncapped or capped per sending host at 1 GbE (117 MB/s,
the agent's `--transfer-rate`).

With LAN copies, the first host's agent downloads the model itself and the
others copy it from there while it arrives (`olol.transfer.growing`).

Also: the throughput of one LAN copy (agent to agent, every chunk crc-checked,
sha256-verified, installed into the receiving Ollama while it arrives) against
a plain file copy over the same loopback link (sendfile into a socket, written
to disk), with and without a sha256 pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import platform
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from bench._report import median, table, write_section
from olol.proxy import ProxyConfig, start_proxy
from olol.transfer.client import TransferClient
from tests.placement.models_dir import gguf_bytes, write_ollama_model
from tests.placement.registry import RegistryStandIn

MB = 1_000_000
MODEL = "bench-model:latest"
SIZE = int(os.environ.get("OLOL_BENCH_MODEL_MB", "200")) * MB
RUNS = int(os.environ.get("OLOL_BENCH_RUNS", "3"))
GBE = 117 * MB  # 1 GbE payload rate
#: (registry rate shared by the site, LAN label, per-host send cap): 200, 400 and 800 Mbit/s internet links.
CASES = (
    (25 * MB, "loopback", None),
    (25 * MB, "1 GbE per host", GBE),
    (50 * MB, "loopback", None),
    (100 * MB, "loopback", None),
)
ROOT = Path(__file__).resolve().parents[1]


class Host:
    def __init__(self, proc: asyncio.subprocess.Process, target: str, url: str, models: Path) -> None:
        self.proc, self.target, self.url, self.models = proc, target, url, models


@contextlib.asynccontextmanager
async def hosts(work: Path, n: int, registry: str | None, lan_rate: float | None) -> AsyncIterator[list[Host]]:
    started: list[Host] = []
    try:
        for i in range(n):
            models = work / f"host{i}" / "models"
            models.mkdir(parents=True)
            argv = [
                sys.executable,
                "-m",
                "bench._placement_host",
                "--models",
                str(models),
                "--staging",
                str(work / f"host{i}" / "staging"),
            ]
            argv += ["--registry", registry] if registry else []
            argv += ["--transfer-rate", str(lan_rate)] if lan_rate else []
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
            proc = await asyncio.create_subprocess_exec(*argv, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE)
            assert proc.stdout is not None
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode().split()
            if not line or line[0] != "READY":
                raise RuntimeError(f"benchmark host failed to start: {line}")
            started.append(Host(proc, line[1], line[2], models))
        yield started
    finally:
        for host in started:
            with contextlib.suppress(ProcessLookupError):
                host.proc.terminate()
            await host.proc.wait()


async def place_on_three(registry_root: Path, wan_rate: float, *, lan_copy: bool, lan_rate: float | None) -> float:
    """Seconds from `/api/pull` with `replicas: 3` to its final line."""
    registry = await RegistryStandIn(registry_root, rate=wan_rate).start()
    work = Path(tempfile.mkdtemp(prefix="olol-bench-place-"))
    try:
        async with hosts(work, 3, registry.url, lan_rate) as nodes:
            config = ProxyConfig(
                host="127.0.0.1",
                port=0,
                servers=[h.target for h in nodes],
                lan_copy=lan_copy,
                probe_interval=0.5,
                transfer_dir=str(work / "proxy"),
            )
            proxy = await start_proxy(config)
            try:
                async with aiohttp.ClientSession() as http:
                    started = time.perf_counter()
                    async with http.post(proxy.url + "/api/pull", json={"model": MODEL, "replicas": 3}) as resp:
                        lines = [json.loads(raw) for raw in (await resp.read()).splitlines() if raw.strip()]
                    elapsed = time.perf_counter() - started
            finally:
                await proxy.stop()
        final = lines[-1]
        if final.get("status") != "success" or len(final["olol"]["hosts"]) != 3:
            raise RuntimeError(f"placement failed: {final}")
        via = sorted(final["olol"]["via"].values())
        expected = 1 if lan_copy else 3
        if via.count("registry") != expected:
            raise RuntimeError(f"expected {expected} registry download(s), got {via}")
        return elapsed
    finally:
        await registry.stop()
        shutil.rmtree(work, ignore_errors=True)


async def olol_copy(source_root: Path) -> float:
    """Seconds for one agent-to-agent copy of the model, installed into the receiving Ollama."""
    work = Path(tempfile.mkdtemp(prefix="olol-bench-copy-"))
    try:
        async with hosts(work, 2, None, None) as (a, b):
            shutil.rmtree(a.models)
            shutil.copytree(source_root, a.models)  # host A has the model; restart not needed: read per request
            async with TransferClient(b.target) as client:
                started = time.perf_counter()
                lines = [line async for line in client.fetch(a.target, MODEL)]
                elapsed = time.perf_counter() - started
        if lines[-1]["status"] != "success":
            raise RuntimeError(f"copy failed: {lines[-1]}")
        return elapsed
    finally:
        shutil.rmtree(work, ignore_errors=True)


def plain_copy(blob: Path, *, verify: bool) -> float:
    """Seconds to send `blob` over loopback TCP (sendfile) and write it to disk, optionally hashing it."""
    work = Path(tempfile.mkdtemp(prefix="olol-bench-plain-"))
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    try:
        pid = os.fork()
        if pid == 0:  # the sending host
            conn, _ = server.accept()
            with open(blob, "rb") as f:
                conn.sendfile(f)
            conn.close()
            os._exit(0)
        started = time.perf_counter()
        sha = hashlib.sha256()
        with socket.create_connection(("127.0.0.1", port)) as sock, open(work / "copy", "wb") as out:
            while data := sock.recv(1 << 20):
                out.write(data)
                if verify:
                    sha.update(data)
        elapsed = time.perf_counter() - started
        os.waitpid(pid, 0)
        return elapsed
    finally:
        server.close()
        shutil.rmtree(work, ignore_errors=True)


def _verdict(ratio: float) -> str:
    return f"{ratio:.2f}x ({'met' if ratio <= 0.5 else 'NOT met'})"


def _rate(seconds: float) -> str:
    return f"{SIZE / seconds / MB:.0f} MB/s"


async def main() -> None:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    base = Path(tempfile.mkdtemp(prefix="olol-bench-model-"))
    try:
        laid = write_ollama_model(base, MODEL, gguf_bytes(SIZE, seed=11))
        blob = base / "blobs" / laid.weights_digest.replace(":", "-")
        rows = []
        pulls: dict[float, float] = {}
        for wan, lan_label, lan_rate in CASES:
            copies, independent = [], []
            for _ in range(RUNS):  # interleaved, so load from elsewhere on the box hits both alike
                if wan not in pulls:
                    independent.append(await place_on_three(base, wan, lan_copy=False, lan_rate=None))
                copies.append(await place_on_three(base, wan, lan_copy=True, lan_rate=lan_rate))
            if wan not in pulls:
                pulls[wan] = median(independent)
            p, c = pulls[wan], median(copies)
            rows.append([f"{wan / MB:.0f} MB/s", lan_label, f"{p:.2f} s", f"{c:.2f} s", _verdict(c / p)])
            print(" | ".join(rows[-1]), flush=True)
        ours = median([await olol_copy(base) for _ in range(RUNS)])
        plain = median([plain_copy(blob, verify=False) for _ in range(RUNS)])
        hashed = median([plain_copy(blob, verify=True) for _ in range(RUNS)])
        copy_rows = [
            ["OLOL LAN copy (gRPC, crc32 per chunk, sha256, installed into Ollama)", f"{ours:.2f} s", _rate(ours)],
            ["plain file copy (sendfile over TCP, written to disk)", f"{plain:.2f} s", _rate(plain)],
            ["plain file copy + sha256", f"{hashed:.2f} s", _rate(hashed)],
        ]
        for row in copy_rows:
            print(" | ".join(row), flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    markdown = (
        "## Model placement: LAN copies vs independent pulls\n\n"
        f"`python -m bench.bench_placement`. Scaled down: a {SIZE / MB:.0f} MB model stands in for the 2 GB one "
        "(both methods scale with size; the ratio is the figure). 3 hosts, each its own process (a disk-backed "
        "Ollama stand-in and the OLOL agent), proxy and registry stand-in in a fourth; median of "
        f"{RUNS} runs each; {os.cpu_count()} CPU cores shared by all of them and by other work on the box "
        f"(load average at start {load}), "
        f"Python {platform.python_version()}. The registry stand-in serves at the WAN rate below, shared by "
        "all hosts (one internet link per site); the LAN is loopback, uncapped or capped per sending host "
        "at 1 GbE (`olol server --transfer-rate`). Target: LAN placement <= 0.5x the independent pulls.\n\n"
        + table(["WAN (registry)", "LAN", "3 independent pulls", "1 pull + 2 LAN copies", "ratio"], rows)
        + "\n\nOne copy of the model between two hosts against a plain file copy over the same loopback link:\n\n"
        + table(["copy", "time", "throughput"], copy_rows)
        + "\n\nHow the LAN placement runs: the first host's agent downloads the model from the registry itself, "
        "in order, into its staging file (and into its Ollama through `/api/blobs` + `/api/create`); the two "
        "other hosts start copying from it as soon as its download has begun, reading the file as it grows "
        "(the last chunk only after the first host has verified the sha256), so the registry is read once and the "
        "copies finish shortly after the download. Independent pulls are each host's Ollama stand-in pulling "
        "on its own, sharing the WAN link.\n\n"
        "A LAN copy does more than move bytes: it checks a crc32 per chunk, hashes the whole blob, and "
        "uploads it into the receiving Ollama as it arrives (Ollama hashes it again). Each byte is crc'd once "
        "per host: the first host serves its peers the crc32 it computed when it wrote each chunk (chunks "
        "from the registry come over HTTP and carry none; sha256 covers them), and agents keep the 1 MiB "
        "buffers a copy frees for the next chunk instead of faulting in fresh pages (`olol.transfer._memory`; "
        "the Ollama stand-in shares its host's process here, so it gains from that too, which a real Ollama "
        f"would not). Every host, the proxy and the registry share {os.cpu_count()} cores here, so at the "
        "faster WAN rates the hashing and copying of three hosts on one small CPU, not the links, bound the "
        "LAN placement; on a real LAN each host does its share on its own CPU."
    )
    write_section("placement", markdown)


if __name__ == "__main__":
    asyncio.run(main())
