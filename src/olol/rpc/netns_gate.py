"""The ggml worker's gate: a process in a network namespace of its own that starts the worker there and
opens connections to it for the rpc-server (`python -m olol.rpc.netns_gate`, or `olol _netns-gate`).

Why: ggml-rpc-server has no authentication, serves one client at a time and can only listen on TCP.
On the host's 127.0.0.1 any local user could connect first and hold it (every tunnel then waits) or
speak ggml RPC to it directly. In a namespace whose only interface is its own `lo`, nothing on the
host's network can reach it (entering the namespace takes root, or the rpc-server's own user, who
could read its memory anyway). The rpc-server cannot create sockets in that namespace itself (setns(2)
needs CAP_SYS_ADMIN, and joining a user namespace a single-threaded process), so this gate, which
lives there, connects on its behalf and hands each socket over a Unix socket pair (SCM_RIGHTS): a
socket stays in the namespace it was created in, whoever holds its descriptor.

    netns_gate CONTROL_FD PORT WORKER_ARGV...

CONTROL_FD is a SOCK_SEQPACKET socket shared with the rpc-server:
  gate -> parent, once: b"I<pid>" isolated, worker started; b"N<reason>" no namespace could be made
  (nothing was started: the rpc-server falls back to the host's loopback); b"E<reason>" the worker
  could not be started.
  parent -> gate: b"C"; gate -> parent: b"S" with the descriptor of a socket whose connect to
  127.0.0.1:PORT is done or in progress (the parent waits for it), or b"E<errno>".
EOF on CONTROL_FD, or SIGTERM: the worker is stopped; the gate exits with the worker's status.

Standard library only, and nothing imported that starts a thread: unshare(CLONE_NEWUSER) refuses a
multithreaded caller.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import signal
import socket
import struct
import subprocess
import sys
import threading

__all__ = ["GATE_COMMAND", "main"]

GATE_COMMAND = "_netns-gate"  # `olol _netns-gate ...` in the one-file binary, which has no `-m`

_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000
_PR_SET_PDEATHSIG = 1
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def enter_namespace() -> None:
    """A new network namespace with `lo` up. Root needs only that; anyone else first gets a user namespace
    of their own, mapping their uid and gid to themselves (the worker keeps its identity and files)."""
    uid, gid = os.geteuid(), os.getegid()
    if uid == 0:
        _check(_libc.unshare(_CLONE_NEWNET))
    else:
        _check(_libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET))
        with open("/proc/self/setgroups", "w") as f:  # required before an unprivileged gid_map
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"{uid} {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"{gid} {gid} 1")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH14x", b"lo", 0)
        (flags,) = struct.unpack_from("H", fcntl.ioctl(s, _SIOCGIFFLAGS, request), 16)
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def _die_with_gate() -> None:
    """In the worker before exec: killed if the gate dies (a SIGKILLed gate must not leave it running)."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _serve(control: socket.socket, port: int, worker: subprocess.Popen[bytes]) -> None:
    while True:
        try:
            message = control.recv(16)
        except OSError:
            message = b""
        if not message:  # the rpc-server is gone
            worker.terminate()
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)  # a full accept queue must not stall the next request
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            code = sock.connect_ex(("127.0.0.1", port))
            if code in (0, errno.EINPROGRESS):
                socket.send_fds(control, [b"S"], [sock.fileno()])
            else:
                control.send(b"E%d" % code)
        except OSError:
            worker.terminate()
            return
        finally:
            sock.close()


def main(args: list[str]) -> int:
    control = socket.socket(fileno=int(args[0]))
    port = int(args[1])
    argv = args[2:]
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # inherited: a client hanging up must not kill the worker
    worker: subprocess.Popen[bytes] | None = None

    def stop(signum: int, frame: object) -> None:
        if worker is None:
            os._exit(128 + signum)
        worker.terminate()

    signal.signal(signal.SIGTERM, stop)
    try:
        enter_namespace()
    except OSError as exc:
        control.send(b"N" + f"unshare/lo: {exc}".encode())
        return 0
    try:
        worker = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, restore_signals=False, preexec_fn=_die_with_gate, close_fds=True
        )
    except OSError as exc:
        control.send(b"E" + str(exc).encode())
        return 1
    control.send(b"I%d" % worker.pid)
    threading.Thread(target=_serve, args=(control, port, worker), daemon=True).start()
    code = worker.wait()
    sys.stdout.flush()
    os._exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
