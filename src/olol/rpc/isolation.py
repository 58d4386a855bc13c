"""The rpc-server's end of the worker's network namespace (`olol.rpc.netns_gate` is the other).

`start_gate` launches the gate, which makes the namespace and starts the worker in it, and returns a
`Gate` that opens connections to the worker; or the reason no namespace could be made (no Linux, a
seccomp filter or sysctl forbidding user namespaces), in which case nothing was started and the caller
runs the worker on the host's loopback instead. Every connection, OLOL's probes included, goes through
`Gate.connect` / `Gate.connect_blocking`: no process outside the namespace can open one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from olol.rpc.netns_gate import GATE_COMMAND

__all__ = ["Gate", "gate_command", "start_gate"]

Spawn = Callable[..., Coroutine[Any, Any, asyncio.subprocess.Process]]


def gate_command() -> list[str]:
    """How to run the gate: the one-file binary runs itself, Python runs the module."""
    if "__compiled__" in globals():  # set by Nuitka in compiled modules
        return [sys.argv[0], GATE_COMMAND]
    return [sys.executable, "-m", "olol.rpc.netns_gate"]


class Gate:
    """Connections into the worker's namespace. Thread-safe: probes run in threads, tunnels on the loop."""

    def __init__(self, control: socket.socket, worker_pid: int) -> None:
        self.control = control
        self.worker_pid = worker_pid  # in the host's pid namespace (only the network is separate)
        self._lock = threading.Lock()

    def close(self) -> None:
        self.control.close()  # EOF: the gate stops the worker, if SIGTERM did not already

    def _request(self, timeout: float) -> socket.socket:
        """A socket whose connect to the worker is done or in progress (non-blocking)."""
        with self._lock:
            self.control.settimeout(timeout)
            try:
                self.control.send(b"C")
                message, fds, _, _ = socket.recv_fds(self.control, 64, 1)
            except (OSError, ValueError) as exc:
                raise ConnectionError(f"the ggml worker's gate: {exc}") from exc
        if message == b"S" and fds:
            return socket.socket(fileno=fds[0])
        for fd in fds:
            os.close(fd)
        if message.startswith(b"E") and message[1:].isdigit():
            code = int(message[1:])
            raise ConnectionRefusedError(code, os.strerror(code))
        raise ConnectionError("the ggml worker's gate is gone" if not message else f"the gate said {message!r}")

    def connect_blocking(self, timeout: float) -> socket.socket:
        """A connected, blocking socket (for probes and seeding, which run in threads)."""
        deadline = time.monotonic() + timeout
        sock = self._request(timeout)
        try:
            poller = select.poll()
            poller.register(sock, select.POLLOUT)
            if not poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
                raise TimeoutError("connecting to the ggml worker timed out")
            _raise_connect_error(sock)
            sock.setblocking(True)
        except BaseException:
            sock.close()
            raise
        return sock

    async def connect(self, timeout: float = 30.0) -> socket.socket:
        """A connected, non-blocking socket for the event loop (tunnel sessions)."""
        sock = await asyncio.to_thread(self._request, timeout)
        loop = asyncio.get_running_loop()
        writable: asyncio.Future[None] = loop.create_future()

        def ready() -> None:
            if not writable.done():
                writable.set_result(None)

        try:
            loop.add_writer(sock.fileno(), ready)
            try:
                await asyncio.wait_for(writable, timeout)
            finally:
                loop.remove_writer(sock.fileno())
            _raise_connect_error(sock)
        except BaseException:
            sock.close()
            raise
        return sock


def _raise_connect_error(sock: socket.socket) -> None:
    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if code:
        raise ConnectionRefusedError(code, os.strerror(code))


async def start_gate(
    argv: list[str], env: dict[str, str], port: int, spawn: Spawn, timeout: float
) -> tuple[asyncio.subprocess.Process, Gate | None, str]:
    """Start the gate (which starts the worker): (process, gate, "") when isolated; (process, None,
    reason) when no namespace could be made, the worker would not start in it or the gate could not
    run (it has exited, nothing was started)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        proc = await spawn([*gate_command(), str(theirs.fileno()), str(port), *argv], env, pass_fds=(theirs.fileno(),))
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()  # the gate's copy is its own: its exit is our EOF
    silence = ""
    try:
        ours.settimeout(timeout)
        message = await asyncio.to_thread(ours.recv, 4096)
    except OSError as exc:
        message, silence = b"", f"no word from it: {exc}"
    if message.startswith(b"I") and message[1:].isdigit():
        return proc, Gate(ours, int(message[1:])), ""
    ours.close()
    if message[:1] in (b"N", b"E"):  # it exits by itself, having started nothing
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 5.0)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()  # no word at all (a gate that could not run): nothing else runs
    await proc.wait()
    if message.startswith(b"N"):
        return proc, None, message[1:].decode(errors="replace")
    if message.startswith(b"E"):  # on the host it may start yet (a sandbox that hides it from namespaces)
        return proc, None, f"the worker would not start in the namespace: {message[1:].decode(errors='replace')}"
    said = (await proc.stderr.read(1 << 16)).decode(errors="replace").strip() if proc.stderr else ""
    last = said.splitlines()[-1] if said else ""
    return proc, None, silence or f"the gate exited with code {proc.returncode}" + (f": {last}" if last else "")
