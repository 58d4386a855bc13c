"""The supervised ggml worker: probed over the ggml protocol, measured, restarted when it dies."""

from __future__ import annotations

import asyncio

import pytest

from olol.backends.llamacpp.bins import LlamaBinaries
from olol.rpc.probe import probe_worker
from olol.rpc.worker import GgmlWorker, WorkerConfig

pytestmark = pytest.mark.slow


async def test_probe_measure_and_restart(llama_bins: LlamaBinaries) -> None:
    worker = GgmlWorker(WorkerConfig(binary=llama_bins.rpc_server, threads=1, matrix_bytes=8 << 20))
    await worker.start()
    try:
        probe = worker.probe
        assert probe is not None and probe.version == (7, 0, 0)
        assert [d.name for d in probe.devices] == ["CPU"] and probe.devices[0].total_bytes > 0
        # A matrix-vector product of 8 MiB of f32 weights: plausible bytes per second for any CPU.
        assert 1e8 < probe.speed < 1e12
        port = worker.port

        await worker.kill()
        async with asyncio.timeout(30):
            while worker.restarts == 0:
                await asyncio.sleep(0.05)
        assert await worker.wait_running(1.0) and worker.port == port  # same port: direct-mode coordinators keep it
        # Through the worker's own connection path: on Linux it lives in a network namespace of its own.
        again = probe_worker(worker.host, worker.port, timeout=10, sock=worker.connect_blocking(10))
        assert again.devices[0].name == "dev0"  # the protocol itself has no names: OLOL asked ggml for them
    finally:
        await worker.close()
    assert not worker.running
