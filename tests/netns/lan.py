"""A simulated LAN in network namespaces: one namespace per host, all on one bridge.

    test process (root ns) --veth--+
                                   |  bridge namespace: br0
    host ns "a1" (eth0) ----veth---+
    host ns "a2" (eth0) ----veth---+

The test process itself joins the LAN through a veth (`root_if`, address .1),
so a proxy started in-process sees the hosts exactly as over a real network,
multicast (mDNS) included. Cutting a host's cable is `ip link set down` on its
port of the bridge; `delay()` adds latency with `tc netem` when the kernel has
it. Everything is created with unique names and removed in `close()`, also
after a failed start.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
_counter = itertools.count()


def netns_unavailable() -> str | None:
    """Why these tests cannot run here (None when they can)."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespace tests need root"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    probe = f"ololprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str, ns: str | None = None) -> None:
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip()}")


@dataclass
class NetHost:
    name: str
    ns: str
    address: str
    port_if: str  # its port on the bridge (in the bridge namespace): the "cable"
    processes: list[asyncio.subprocess.Process] = field(default_factory=list)


class Lan:
    def __init__(self) -> None:
        tag = f"{os.getpid() % 10000:04d}{next(_counter) % 100:02d}"
        self.tag = tag
        self.bridge_ns = f"olol{tag}br"
        self.subnet = f"10.{random.randint(100, 250)}.{random.randint(0, 255)}"
        self.root_if = f"ol{tag}r"
        self.root_address = f"{self.subnet}.1"
        self.hosts: dict[str, NetHost] = {}
        self._namespaces: list[str] = []

    # ------------------------------------------------------------------ building
    def start(self) -> Lan:
        try:
            self._add_ns(self.bridge_ns)
            _ip("link", "add", "br0", "type", "bridge", ns=self.bridge_ns)
            _ip("link", "set", "br0", "up", ns=self.bridge_ns)
            _ip("link", "add", self.root_if, "type", "veth", "peer", "name", f"ol{self.tag}R")
            self._plug(f"ol{self.tag}R")
            _ip("addr", "add", f"{self.root_address}/24", "dev", self.root_if)
            _ip("link", "set", self.root_if, "up")
        except BaseException:
            self.close()
            raise
        return self

    def _add_ns(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self._namespaces.append(ns)
        _ip("link", "set", "lo", "up", ns=ns)

    def _plug(self, port_if: str) -> None:
        _ip("link", "set", port_if, "netns", self.bridge_ns)
        _ip("link", "set", port_if, "master", "br0", ns=self.bridge_ns)
        _ip("link", "set", port_if, "up", ns=self.bridge_ns)

    def add_host(self, name: str) -> NetHost:
        index = len(self.hosts) + 2
        ns = f"olol{self.tag}{name}"
        port_if, host_if = f"ol{self.tag}p{index}", f"ol{self.tag}h{index}"
        self._add_ns(ns)
        _ip("link", "add", host_if, "type", "veth", "peer", "name", port_if)
        _ip("link", "set", host_if, "netns", ns)
        _ip("link", "set", host_if, "name", "eth0", ns=ns)
        _ip("addr", "add", f"{self.subnet}.{index}/24", "dev", "eth0", ns=ns)
        _ip("link", "set", "eth0", "up", ns=ns)
        self._plug(port_if)
        host = NetHost(name, ns, f"{self.subnet}.{index}", port_if)
        self.hosts[name] = host
        return host

    # ------------------------------------------------------------------ faults
    def cut(self, host: NetHost) -> None:
        """Pull the host's cable: its bridge port goes down (its eth0 loses carrier)."""
        _ip("link", "set", host.port_if, "down", ns=self.bridge_ns)

    def reconnect(self, host: NetHost) -> None:
        _ip("link", "set", host.port_if, "up", ns=self.bridge_ns)

    @staticmethod
    def netem_available() -> bool:
        probe = subprocess.run(
            ["tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"], capture_output=True, text=True
        )
        if probe.returncode == 0:
            subprocess.run(["tc", "qdisc", "del", "dev", "lo", "root"], capture_output=True)
            return True
        return False

    def delay(self, host: NetHost, ms: int) -> None:
        """Add latency to everything the host sends (tc netem)."""
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                host.ns,
                "tc",
                "qdisc",
                "replace",
                "dev",
                "eth0",
                "root",
                "netem",
                "delay",
                f"{ms}ms",
            ],
            check=True,
            capture_output=True,
        )

    # ------------------------------------------------------------------ processes
    async def spawn(self, host: NetHost, *argv: str, ready: str = "READY ", timeout: float = 30.0) -> str:
        """Run a command inside the host's namespace; returns the rest of its READY line."""
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(REPO_ROOT / "src"), str(REPO_ROOT), os.environ.get("PYTHONPATH")])
            ),
        }
        proc = await asyncio.create_subprocess_exec(
            "ip",
            "netns",
            "exec",
            host.ns,
            *argv,
            cwd=REPO_ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        host.processes.append(proc)
        assert proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                line = (await proc.stdout.readline()).decode()
                if not line:
                    raise RuntimeError(f"{argv} in {host.ns} exited before {ready!r} (code {proc.returncode})")
                if line.startswith(ready):
                    return line[len(ready) :].strip()

    async def stop_processes(self) -> None:
        for host in self.hosts.values():
            for proc in host.processes:
                if proc.returncode is None:
                    proc.terminate()
            for proc in host.processes:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(10):
                        await proc.wait()
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            host.processes.clear()

    def close(self) -> None:
        """Delete every namespace (their veths go with them) and the root-side veth."""
        subprocess.run(["ip", "link", "del", self.root_if], capture_output=True)
        for ns in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self._namespaces.clear()
