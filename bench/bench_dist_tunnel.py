"""The tunnel in isolation, with real llama.cpp workers: its cost per round trip, and pre-seeding.

    python -m bench.bench_dist_tunnel [rtt] [preseed]     # default: both

* rtt: what the tunnel adds to one ggml round trip (latency, and CPU at each end);
* preseed: bytes that cross the tunnel while a model loads, with and without pre-seeding.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from bench._relay_floor import native_relays
from bench._report import median, table
from bench.bench_dist import TOKEN, decode_speed, dist_config, publish, workers
from olol import eventloop
from olol.backends.llamacpp.tiny_model import ensure_tiny_model
from olol.rpc.ggml_client import GgmlClient
from olol.split.coordinator import Coordinator
from olol.split.tunnel import LocalTunnel
from olol.split.workers import RemoteWorker

MIB = 1 << 20
# Preseeding needs tensors over llama.cpp's 10 MiB hashing threshold, as real models have.
SEED_MODEL: dict[str, Any] = {
    "layers": 2,
    "width": 2048,
    "ff": 5632,
    "heads": 16,
    "kv_heads": 16,
    "name": "bench2x2048",
}


WARM_UP = 100


def _round_trips(endpoint: str, n: int) -> float:
    """Seconds per ggml request/reply (GET_ALIGNMENT) on one connection, after a warm-up."""
    host, port = endpoint.rsplit(":", 1)
    with GgmlClient(host, int(port), timeout=120) as client:
        client.hello()
        for _ in range(WARM_UP):
            client.alignment(0)
        start = time.perf_counter()
        for _ in range(n):
            client.alignment(0)
        return (time.perf_counter() - start) / n


async def _client_process(endpoint: str, n: int) -> float:
    """`_round_trips` in a process of its own, as llama-server is: a client thread in this process would
    compete for the GIL with the coordinator's tunnel and inflate the tunnel's figures."""
    code = f"from bench.bench_dist_tunnel import _round_trips; print(_round_trips({endpoint!r}, {n}))"
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"ggml client exited with {proc.returncode}")
    return float(out)


def _cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def bench_rtt(n: int = 3000, rounds: int = 5) -> str:
    """What the tunnel adds to one round trip, the unit of its cost per token and worker, both data paths."""
    paths = ("stream", "grpc")
    async with workers(1, extra=("--no-speed-test",)) as ws:
        tunnels = {path: LocalTunnel(RemoteWorker(ws[0].target, token=TOKEN), data_path=path) for path in paths}
        for tunnel in tunnels.values():
            await tunnel.start()
        assert tunnels["stream"].data_path == "stream", "the rpc-server offered no data port"
        relays, relay_port = await native_relays(int(ws[0].ggml.rsplit(":", 1)[1]), 2)
        native_s: list[float] = []
        direct_s: list[float] = []
        tunnel_s: dict[str, list[float]] = {p: [] for p in paths}
        server_cpu: dict[str, list[float]] = {p: [] for p in paths}
        coordinator_cpu: dict[str, list[float]] = {p: [] for p in paths}
        try:
            for _ in range(rounds):
                direct_s.append(await _client_process(ws[0].ggml, n))
                native_s.append(await _client_process(f"127.0.0.1:{relay_port}", n))
                for path, tunnel in tunnels.items():
                    cpu0, cpu1 = _cpu(ws[0].proc.pid), _cpu(os.getpid())
                    tunnel_s[path].append(await _client_process(tunnel.endpoint, n))
                    server_cpu[path].append((_cpu(ws[0].proc.pid) - cpu0) / (n + WARM_UP))
                    coordinator_cpu[path].append((_cpu(os.getpid()) - cpu1) / (n + WARM_UP))
        finally:
            for tunnel in tunnels.values():
                await tunnel.close()
            for relay in relays:
                relay.kill()
                await relay.wait()
    us = 1e6
    names = {"stream": "tunnel, data port (the default)", "grpc": "tunnel, gRPC messages (--transport grpc)"}
    rows = [
        ["direct (llama.cpp's own TCP)", f"{median(direct_s) * us:.0f} us", "-", "-", "-"],
        [
            "two minimal C relays (no checks; the floor of two hops)",
            f"{median(native_s) * us:.0f} us",
            f"+{(median(native_s) - median(direct_s)) * us:.0f} us",
            "-",
            "-",
        ],
    ]
    for path in paths:
        rows.append(
            [
                names[path],
                f"{median(tunnel_s[path]) * us:.0f} us",
                f"+{(median(tunnel_s[path]) - median(direct_s)) * us:.0f} us",
                f"{median(server_cpu[path]) * us:.0f} us",
                f"{median(coordinator_cpu[path]) * us:.0f} us",
            ]
        )
    added = (median(tunnel_s["stream"]) - median(direct_s)) * 1e3
    floor = median(native_s) - median(direct_s)
    return (
        "### The tunnel's cost per round trip\n\n"
        f"One ggml request and its reply (GET_ALIGNMENT), {n} in a row on one connection, median of {rounds} "
        "runs, the three paths in turn. The client is a process of its own, as llama-server is (a client thread "
        "in the process of the tunnel would compete with it for the GIL); CPU is what the rpc-server process and "
        "the coordinator's tunnel (the benchmark process, which runs nothing else meanwhile) spend per round "
        "trip.\n\n"
        + table(["path", "round trip", "added", "rpc-server CPU", "coordinator CPU"], rows)
        + f"\n\nDecoding makes one round trip per token and worker, so the default tunnel adds about {added:.2f} "
        "ms per token and worker here: a model split over W workers that takes T ms per token runs at about "
        f"T / (T + {added:.2f} W) of plain llama.cpp's speed, before CPU contention on this shared box. The data "
        "port carries the same validated byte stream as the gRPC `Tunnel` call, admitted by a single-use ticket "
        "from the authenticated gRPC service; it relays each read straight into the other socket "
        "(asyncio Protocols on uvloop), where a gRPC message costs about 0.1 ms of CPU at each end. The C row "
        "(`bench/native_relay.c`: poll, read, write) is what two hops cost on this box with no interpreter "
        f"and no checks: {floor * us:.0f} us of the {added * 1e3:.0f} us the data port adds, so a native relay "
        f"could save at most about {(added * 1e-3 - floor) * us:.0f} us per round trip; the rest is the hops."
    )


async def bench_preseed(tmp: Path) -> str:
    model = ensure_tiny_model(**SEED_MODEL)
    rows = []
    for label, extra in (("cold cache", ("--cache",)), ("pre-seeded", ("--preseed", str(model)))):
        cache = tmp / label.replace(" ", "-")
        async with workers(1, extra=(*extra, "--cache-dir", str(cache), "--no-speed-test")) as ws:
            started = time.perf_counter()
            coordinator = Coordinator(dist_config(model, ws, "tunnel"))
            await coordinator.start()
            load_s = time.perf_counter() - started
            caps = await RemoteWorker(ws[0].target, token=TOKEN).capabilities()
            weights = coordinator.plan.profile.weight_bytes if coordinator.plan else 1
            await decode_speed(coordinator.url, 2)
            await coordinator.close()
        crossed = caps.stats.bytes_to_worker
        rows.append([label, f"{crossed / MIB:.2f} MiB", f"{crossed / weights:.3%}", f"{load_s:.1f} s"])
        print(label, rows[-1], flush=True)
    return (
        "### Weight bytes crossing the tunnel at cold load\n\n"
        f"Model: 2 x 2048 f32 ({weights / MIB:.0f} MiB of weights on the worker; every matrix is over "
        "llama.cpp's 10 MiB hashing threshold, as in real models). Bytes counted by the rpc-server as it "
        "forwards them to its worker, from the first connection until llama-server is ready, through the default "
        "tunnel (the data port).\n\n"
        + table(["worker cache", "bytes to worker", "of the weights", "load time (loopback)"], rows)
        + "\n\nTarget: <= 1% with pre-seeding. What still crosses: tensors under 10 MiB (norms), the hash "
        "requests, and the graph/KV set-up."
    )


async def main(parts: list[str]) -> None:
    for part in parts:
        if part == "rtt":
            text = await bench_rtt()
        elif part == "preseed":
            with tempfile.TemporaryDirectory() as tmp:
                text = await bench_preseed(Path(tmp))
        else:
            raise SystemExit(f"unknown part {part!r}: rtt, preseed")
        publish(part, "bench.bench_dist_tunnel", text)


if __name__ == "__main__":
    eventloop.run(main(sys.argv[1:] or ["rtt", "preseed"]))  # the loop `olol dist` runs on
