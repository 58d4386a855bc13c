"""The hardware report: CPU, RAM, GPUs (NVML or nvidia-smi where present), OS."""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess

import psutil

from olol.proto import pb

__all__ = ["gpus", "hardware_report"]


def _nvidia_smi() -> list[pb.Gpu]:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index,name,memory.total,memory.free", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    found = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 4:
            mib = 1024 * 1024
            found.append(
                pb.Gpu(
                    index=int(parts[0]),
                    name=parts[1],
                    vendor="nvidia",
                    memory_total=int(float(parts[2]) * mib),
                    memory_free=int(float(parts[3]) * mib),
                )
            )
    return found


def _nvml() -> list[pb.Gpu] | None:
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver: NVML raises its own error types
        return None
    try:
        found = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            found.append(
                pb.Gpu(
                    index=i,
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    vendor="nvidia",
                    memory_total=int(mem.total),
                    memory_free=int(mem.free),
                )
            )
        return found
    finally:
        pynvml.nvmlShutdown()


def gpus() -> list[pb.Gpu]:
    nvml = _nvml()
    return nvml if nvml is not None else _nvidia_smi()


def hardware_report() -> pb.HardwareReport:
    mem = psutil.virtual_memory()
    return pb.HardwareReport(
        hostname=socket.gethostname(),
        os=f"{platform.system()} {platform.release()}",
        arch=platform.machine(),
        cpu_cores=psutil.cpu_count(logical=False) or os.cpu_count() or 1,
        cpu_threads=psutil.cpu_count(logical=True) or 1,
        ram_total=mem.total,
        ram_free=mem.available,
        gpus=gpus(),
    )
