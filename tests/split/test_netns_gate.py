"""The ggml worker's namespace gate, with a stand-in worker (a tiny TCP server): only the gate's
connections reach it, it ignores SIGPIPE, and it never outlives the gate or the rpc-server (issue 20).

No llama.cpp needed; tests/split/test_worker_isolation.py runs the real ggml-rpc-server this way."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator

import psutil
import pytest

from olol.rpc.isolation import Gate, start_gate
from olol.rpc.worker import free_port, spawn_worker_process

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="network namespaces are Linux's")

# Listens on 127.0.0.1:PORT and answers each connection with its SigIgn mask, then closes it.
STAND_IN = """
import socket, sys
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1]))); srv.listen(1)
mask = [l.split()[1] for l in open("/proc/self/status") if l.startswith("SigIgn")][0]
while True:
    c, _ = srv.accept(); c.sendall(mask.encode()); c.close()
"""


async def _started(port: int) -> tuple[asyncio.subprocess.Process, Gate]:
    proc, gate, why = await start_gate(
        [sys.executable, "-c", STAND_IN, str(port)], dict(os.environ), port, spawn_worker_process, 30
    )
    assert gate is not None, why
    return proc, gate


@pytest.fixture
async def gated() -> AsyncIterator[tuple[asyncio.subprocess.Process, Gate, int]]:
    port = free_port()
    proc, gate = await _started(port)
    yield proc, gate, port
    gate.close()
    if proc.returncode is None:
        proc.terminate()
    await proc.wait()


async def _answer(gate: Gate) -> bytes:
    """What the stand-in says through a connection from the gate (retried until it listens)."""
    for _ in range(200):
        try:
            sock = await gate.connect(5)
        except ConnectionRefusedError:
            await asyncio.sleep(0.02)
            continue
        with sock:
            reader, writer = await asyncio.open_connection(sock=sock)
            data = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            return data
    raise AssertionError("the stand-in worker never listened")


async def test_only_the_gate_reaches_the_worker(gated: tuple[asyncio.subprocess.Process, Gate, int]) -> None:
    _, gate, port = gated
    mask = int(await _answer(gate), 16)
    assert mask & (1 << (signal.SIGPIPE - 1))  # a client hanging up mid-reply cannot kill the worker
    # The same address from this process (the host's namespace): nobody listens there.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    # Blocking connections (probes, seeding) come the same way.
    def blocking() -> bytes:
        with gate.connect_blocking(5) as sock:
            return sock.recv(64)

    assert int(await asyncio.to_thread(blocking), 16) == mask


async def test_the_worker_never_outlives_its_gate(gated: tuple[asyncio.subprocess.Process, Gate, int]) -> None:
    proc, gate, _ = gated
    await _answer(gate)
    worker = psutil.Process(gate.worker_pid)
    proc.kill()  # the gate SIGKILLed: the worker gets its death signal
    await proc.wait()
    psutil.wait_procs([worker], timeout=10)
    assert not worker.is_running()


async def test_the_worker_stops_when_the_rpc_server_lets_go() -> None:
    proc, gate = await _started(free_port())
    await _answer(gate)
    worker = psutil.Process(gate.worker_pid)
    gate.close()  # the rpc-server's end closed (it exited): the gate stops the worker and exits
    code = await asyncio.wait_for(proc.wait(), 10)
    assert code == 128 + signal.SIGTERM
    psutil.wait_procs([worker], timeout=10)
    assert not worker.is_running()


async def test_without_a_namespace_nothing_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where unshare is refused (a container's seccomp filter), the gate says why and starts nothing."""
    from olol.rpc import isolation

    refuse = "import socket, sys; socket.socket(fileno=int(sys.argv[1])).send(b'Nunshare: [Errno 1] not permitted')"
    monkeypatch.setattr(isolation, "gate_command", lambda: [sys.executable, "-c", refuse])
    proc, gate, why = await start_gate(["/bin/false"], dict(os.environ), free_port(), spawn_worker_process, 30)
    assert gate is None and why == "unshare: [Errno 1] not permitted" and proc.returncode == 0


async def test_the_one_file_binary_runs_the_gate_as_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """`olol _netns-gate ...` (what a Nuitka build runs: it has no `python -m`) is the same gate."""
    from olol.rpc import isolation

    monkeypatch.setattr(isolation, "gate_command", lambda: [sys.executable, "-m", "olol", "_netns-gate"])
    port = free_port()
    proc, gate = await _started(port)
    try:
        assert int(await _answer(gate), 16) & (1 << (signal.SIGPIPE - 1))
    finally:
        gate.close()
        await asyncio.wait_for(proc.wait(), 10)


def _unprivileged_python() -> list[str] | None:
    """A command prefix that runs Python with olol importable as an unprivileged user (None: none here)."""
    import shutil
    import subprocess

    if os.geteuid() != 0:
        return [sys.executable]  # already unprivileged
    setpriv = shutil.which("setpriv")
    for python in (sys.executable, "/usr/bin/python3"):
        if setpriv is None or not os.path.exists(python):
            continue
        argv = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", python]
        # os.access too: an exec that only works outside a user namespace (seen in some sandboxes) is no good.
        check = "import os, sys, olol.rpc.netns_gate; sys.exit(not os.access(sys.executable, os.X_OK))"
        probe = subprocess.run([*argv, "-c", check], env=_env(), capture_output=True)
        if probe.returncode == 0:
            return argv
    return None


def _env() -> dict[str, str]:
    import olol

    return {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(olol.__file__))}


async def test_an_unprivileged_user_gets_the_namespace_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not root: a user namespace of its own (mapping only its uid) makes the network namespace possible."""
    from olol.rpc import isolation

    prefix = _unprivileged_python()
    if prefix is None:
        pytest.skip("no Python here that an unprivileged user may run with olol importable")
    monkeypatch.setattr(isolation, "gate_command", lambda: [*prefix, "-m", "olol.rpc.netns_gate"])
    port = free_port()
    proc, gate, why = await start_gate([prefix[-1], "-c", STAND_IN, str(port)], _env(), port, spawn_worker_process, 30)
    assert gate is not None, why
    try:
        assert int(await _answer(gate), 16) & (1 << (signal.SIGPIPE - 1))
        assert psutil.Process(gate.worker_pid).uids().real == (os.geteuid() or 65534)  # its own uid, not root
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        gate.close()
        await asyncio.wait_for(proc.wait(), 10)
