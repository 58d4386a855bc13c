"""The floor of any two-hop relay, for the tunnel benches: chains of the minimal C relay in
`native_relay.c` (compiled once with the system's cc into ~/.cache/olol/bench)."""

from __future__ import annotations

import asyncio
from pathlib import Path

__all__ = ["native_relays"]

NATIVE_RELAY = Path(__file__).with_name("native_relay.c")


async def native_relays(target: int, hops: int) -> tuple[list[asyncio.subprocess.Process], int]:
    """A chain of `hops` C relays in front of port `target` (compiled once with the system's cc);
    returns the processes and the port to dial."""
    binary = Path.home() / ".cache" / "olol" / "bench" / "native_relay"
    if not binary.exists() or binary.stat().st_mtime < NATIVE_RELAY.stat().st_mtime:
        binary.parent.mkdir(parents=True, exist_ok=True)
        cc = await asyncio.create_subprocess_exec("cc", "-O2", "-o", str(binary), str(NATIVE_RELAY))
        if await cc.wait() != 0:
            raise RuntimeError("cannot compile bench/native_relay.c")
    procs = []
    for _ in range(hops):
        proc = await asyncio.create_subprocess_exec(str(binary), str(target), stdout=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        target = int(await proc.stdout.readline())
        procs.append(proc)
    return procs, target
