"""What a ggml worker offers: devices, their memory, and how fast it streams weights.

The speed figure is measured, not guessed from core counts: the worker runs a
matrix-vector product over `matrix_bytes` of f32 weights (the shape of token
generation, which reads every weight once per token and is memory-bandwidth
bound) with its own threads and backend, and the figure is weight bytes per
second. It ranks hosts the way decoding speed does, including a worker given
fewer threads than another on the same machine.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

from olol.rpc.ggml_client import (
    GGML_OP_MUL_MAT,
    GGML_TENSOR_FLAG_COMPUTE,
    GGML_TENSOR_FLAG_OUTPUT,
    GGML_TYPE_F32,
    GgmlClient,
    RpcTensor,
)

__all__ = ["DeviceInfo", "WorkerProbe", "measure_speed", "probe_worker"]

DEFAULT_MATRIX_BYTES = 32 << 20  # beyond last-level caches, so it measures memory, not cache


@dataclass(frozen=True)
class DeviceInfo:
    index: int
    name: str
    free_bytes: int
    total_bytes: int


@dataclass(frozen=True)
class WorkerProbe:
    version: tuple[int, int, int]
    devices: tuple[DeviceInfo, ...]
    speed: float  # weight bytes per second of device 0; 0.0 if not measured
    probed_at: float  # unix seconds

    @property
    def version_text(self) -> str:
        return ".".join(str(v) for v in self.version)


def probe_worker(
    host: str,
    port: int,
    *,
    timeout: float = 5.0,
    measure: bool = False,
    matrix_bytes: int = DEFAULT_MATRIX_BYTES,
    device_names: Sequence[str] = (),
    sock: socket.socket | None = None,
) -> WorkerProbe:
    """HELLO, DEVICE_COUNT and GET_DEVICE_MEMORY per device (and the speed test if `measure`).

    Holds the worker's only client connection for the duration: call it only
    while no llama-server uses the worker. Raises GgmlError on any failure. `sock`: a connection already
    open to the worker (`GgmlWorker.connect_blocking`), which the probe then owns.
    """
    with GgmlClient(host, port, timeout=timeout, sock=sock) as client:
        version = client.hello()
        devices = []
        for index in range(client.device_count()):
            free, total = client.device_memory(index)
            name = device_names[index] if index < len(device_names) else f"dev{index}"
            devices.append(DeviceInfo(index, name, free, total))
        speed = measure_speed(client, 0, matrix_bytes) if measure and devices else 0.0
    return WorkerProbe(version, tuple(devices), speed, time.time())


def _align(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


def measure_speed(
    client: GgmlClient, device: int, matrix_bytes: int, repeats: int = 3, sample_s: float = 0.05
) -> float:
    """Weight bytes per second of y = W x on the worker, W an f32 matrix of about `matrix_bytes`: the
    median of `repeats` samples of at least `sample_s` seconds each."""
    k = 4096
    n = max(1, matrix_bytes // (4 * k))
    alignment = client.alignment(device)
    w_size, x_size, y_size = 4 * k * n, 4 * k, 4 * n
    x_off = _align(w_size, alignment)
    y_off = _align(x_off + x_size, alignment)
    buffer, _ = client.alloc_buffer(device, y_off + _align(y_size, alignment))
    try:
        base = client.buffer_base(buffer)
        client.buffer_clear(buffer, 0)  # zeros: no upload, and no NaNs to slow anything down
        w = RpcTensor(1, GGML_TYPE_F32, buffer, (k, n, 1, 1), (4, 4 * k, w_size, w_size), base, use_count=1)
        x = RpcTensor(2, GGML_TYPE_F32, buffer, (k, 1, 1, 1), (4, x_size, x_size, x_size), base + x_off, use_count=1)
        y = RpcTensor(
            3, GGML_TYPE_F32, buffer, (n, 1, 1, 1), (4, y_size, y_size, y_size), base + y_off,
            op=GGML_OP_MUL_MAT, src=(1, 2), flags=GGML_TENSOR_FLAG_OUTPUT | GGML_TENSOR_FLAG_COMPUTE,
        )  # fmt: skip
        client.graph_compute(device, [3], [w, x, y])
        client.alignment(device)  # replies come in order: this one waits for the compute (and warms up)
        # Each sample runs products for at least `sample_s` (doubling the batch behind one reply until
        # it does): long enough for a sustained rate (CPU quotas, turbo, shared cores show up), and with
        # no separately measured round trip subtracted, which one descheduling could inflate.
        samples = []
        batch = 1
        for _ in range(repeats):
            count = 0
            start = time.perf_counter()
            while True:
                for _ in range(batch):
                    client.graph_recompute(device)
                client.alignment(device)
                count += batch
                elapsed = time.perf_counter() - start
                if elapsed >= sample_s:
                    break
                batch = min(batch * 2, 4096)
            samples.append(elapsed / count)
        samples.sort()
        return w_size / samples[len(samples) // 2]
    finally:
        client.free_buffer(buffer)
