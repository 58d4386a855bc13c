"""Which ggml devices a worker uses: `--device auto|cpu|cuda|rocm|metal|vulkan` or literal names.

`ggml-rpc-server` takes ggml device names (`-d CPU`, `-d CUDA0,CUDA1`) and
says which exist only when given one that does not. OLOL asks it that way once
and passes the resolved names explicitly, so it knows the worker's device order
(which is the order of llama-server's `--tensor-split` entries for the worker).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

__all__ = ["DEVICE_KINDS", "DeviceError", "list_devices", "resolve_devices", "worker_env"]

# Kind -> prefixes of ggml device names (as the backends name their devices).
DEVICE_KINDS: dict[str, tuple[str, ...]] = {
    "cpu": ("CPU",),
    "cuda": ("CUDA",),
    "rocm": ("ROCm", "HIP"),
    "metal": ("MTL", "Metal"),
    "vulkan": ("Vulkan",),
}
# Not offload targets: the CPU itself and CPU-side accelerators such as BLAS.
_HOST_SIDE = ("CPU", "BLAS", "AMX")
_LISTED = re.compile(r"^\s+(\S+): .*\(\d+ MiB, \d+ MiB free\)")


class DeviceError(ValueError):
    pass


def worker_env(binary: Path) -> dict[str, str]:
    """The worker's environment: its shared libraries sit beside it."""
    env = dict(os.environ)
    libs = str(binary.parent)
    env["LD_LIBRARY_PATH"] = libs + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    return env


def list_devices(binary: Path, timeout: float = 30.0) -> list[str]:
    """The ggml device names this build of `ggml-rpc-server` can use, in ggml's order."""
    done = subprocess.run(
        [str(binary), "-d", "olol-list-devices", "-p", "1"],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=worker_env(binary),
        check=False,
    )
    return [m[1] for line in done.stdout.splitlines() if (m := _LISTED.match(line))]


def resolve_devices(kind: str, available: list[str]) -> tuple[list[str], list[str]]:
    """(names to pass with -d, names the worker will expose) for `kind`.

    `auto` does what ggml-rpc-server does without `-d`: every offload device,
    else the CPU; the -d list is then empty. A comma-separated list of device
    names is taken as it is.
    """
    kind = kind.strip()
    if kind.lower() == "auto":
        offload = [n for n in available if not n.startswith(_HOST_SIDE)]
        return [], offload or [n for n in available if n.startswith("CPU")][:1] or ["CPU"]
    prefixes = DEVICE_KINDS.get(kind.lower())
    if prefixes is None:
        names = [n.strip() for n in kind.split(",") if n.strip()]
        missing = [n for n in names if n not in available]
        if missing:
            raise DeviceError(f"unknown ggml device {', '.join(missing)}; this host has {', '.join(available)}")
        return names, names
    chosen = [n for n in available if n.startswith(prefixes)]
    if not chosen:
        have = ", ".join(available) or "none"
        raise DeviceError(f"no {kind} device on this host (ggml devices: {have})")
    return chosen, chosen
