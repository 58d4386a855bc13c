"""A minimal blocking client of the ggml RPC protocol (7.0.0), for probing and seeding a worker.

llama-server is the real client of a `ggml-rpc-server`; OLOL talks to its own
worker only while nothing else does (the worker serves one connection at a
time), to learn what it offers, measure it and fill its tensor cache. Every
call has a deadline: a worker that hangs must not hang the agent in front of it.

Struct layouts are `#pragma pack(1)` little-endian, from llama.cpp's
`ggml/src/ggml-rpc/ggml-rpc.cpp` (protocol 7.0.0, as vendored by
llama-cpp-python 0.3.36; `olol._fast._rpc_proto` records the message sizes).
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

from olol._fast.framing import PROTOCOL_VERSION, RpcCommand, expects_reply

__all__ = [
    "CONN_CAPS_SIZE",
    "GGML_OP_MUL_MAT",
    "GGML_TENSOR_FLAG_COMPUTE",
    "GGML_TENSOR_FLAG_OUTPUT",
    "GGML_TYPE_F32",
    "GGML_TYPE_I8",
    "GgmlClient",
    "GgmlError",
    "RpcTensor",
]

# Enum values of ggml at protocol 7.0.0 (the patch version moves when GGML_OP_COUNT does).
GGML_TYPE_F32 = 0
GGML_TYPE_I8 = 24
GGML_OP_NONE = 0
GGML_OP_MUL_MAT = 29
GGML_TENSOR_FLAG_INPUT = 1
GGML_TENSOR_FLAG_OUTPUT = 2
GGML_TENSOR_FLAG_COMPUTE = 16  # nodes without it are skipped by the CPU backend

CONN_CAPS_SIZE = 24  # HELLO's conn_caps: transport upgrades (RDMA) client and server agree on
# rpc_tensor: id, type, buffer, ne[4] u32, nb[4] u32, op, op_params[16], flags, src[10], view_src,
# view_offs, data, name[64], use_count.
_RPC_TENSOR = struct.Struct("<QIQ4I4II16ii10QQQQ64si")
assert _RPC_TENSOR.size == 296
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_2U64 = struct.Struct("<QQ")


class GgmlError(OSError):
    """The worker could not be reached, refused a request or broke the protocol."""


@dataclass(frozen=True)
class RpcTensor:
    """A tensor as the ggml RPC protocol describes it (only what OLOL's probes need)."""

    id: int
    type: int
    buffer: int
    ne: tuple[int, int, int, int]
    nb: tuple[int, int, int, int]
    data: int
    op: int = GGML_OP_NONE
    src: tuple[int, ...] = ()
    flags: int = 0
    name: str = ""
    use_count: int = 0

    def pack(self) -> bytes:
        src = (*self.src, *(0,) * (10 - len(self.src)))
        return _RPC_TENSOR.pack(
            self.id, self.type, self.buffer, *self.ne, *self.nb, self.op, *(0,) * 16, self.flags,
            *src, 0, 0, self.data, self.name.encode()[:63], self.use_count,
        )  # fmt: skip


class GgmlClient:
    """One connection to a ggml-rpc-server. Use as a context manager; `timeout` bounds the whole session."""

    def __init__(self, host: str, port: int, timeout: float = 5.0, sock: socket.socket | None = None) -> None:
        """`sock`: a connection already open to host:port (an isolated worker's, opened by its gate)."""
        self._deadline = time.monotonic() + timeout
        try:
            self._sock = sock if sock is not None else socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise GgmlError(f"cannot connect to ggml worker {host}:{port}: {exc}") from exc
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.endpoint = f"{host}:{port}"

    def __enter__(self) -> GgmlClient:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    # -- commands ------------------------------------------------------------

    def hello(self) -> tuple[int, int, int]:
        reply = self.call(RpcCommand.HELLO, bytes(CONN_CAPS_SIZE))
        version = (reply[0], reply[1], reply[2])
        if version[0] != PROTOCOL_VERSION[0]:
            raise GgmlError(f"worker speaks ggml RPC {'.'.join(map(str, version))}, OLOL speaks 7.x")
        return version

    def device_count(self) -> int:
        return int(_U32.unpack(self.call(RpcCommand.DEVICE_COUNT))[0])

    def device_memory(self, device: int) -> tuple[int, int]:
        """(free, total) bytes of one device."""
        free, total = _2U64.unpack(self.call(RpcCommand.GET_DEVICE_MEMORY, _U32.pack(device)))
        return int(free), int(total)

    def alignment(self, device: int) -> int:
        return int(_U64.unpack(self.call(RpcCommand.GET_ALIGNMENT, _U32.pack(device)))[0])

    def alloc_buffer(self, device: int, size: int) -> tuple[int, int]:
        """(remote_ptr, size) of a new buffer; remote_ptr 0 means the worker is out of memory."""
        ptr, got = _2U64.unpack(self.call(RpcCommand.ALLOC_BUFFER, struct.pack("<IQ", device, size)))
        if ptr == 0:
            raise GgmlError(f"worker {self.endpoint} could not allocate {size} bytes on device {device}")
        return int(ptr), int(got)

    def buffer_base(self, buffer: int) -> int:
        return int(_U64.unpack(self.call(RpcCommand.BUFFER_GET_BASE, _U64.pack(buffer)))[0])

    def buffer_clear(self, buffer: int, value: int = 0) -> None:
        self.call(RpcCommand.BUFFER_CLEAR, struct.pack("<QB", buffer, value))

    def free_buffer(self, buffer: int) -> None:
        self.call(RpcCommand.FREE_BUFFER, _U64.pack(buffer))

    def set_tensor(self, tensor: RpcTensor, data: bytes | memoryview, *, cache: bool = False, offset: int = 0) -> None:
        """Upload `data`; `cache` asks a worker started with `-c` to keep it in its tensor cache."""
        head = tensor.pack() + struct.pack("<BQ", int(cache), offset)
        self._send(RpcCommand.SET_TENSOR, [head, data])

    def graph_compute(self, device: int, nodes: Sequence[int], tensors: Sequence[RpcTensor]) -> None:
        payload = b"".join(
            [
                struct.pack(f"<II{len(nodes)}Q", device, len(nodes), *nodes),
                _U32.pack(len(tensors)),
                *(t.pack() for t in tensors),
            ]
        )
        self.call(RpcCommand.GRAPH_COMPUTE, payload)

    def graph_recompute(self, device: int) -> None:
        self.call(RpcCommand.GRAPH_RECOMPUTE, _U32.pack(device))

    # -- plumbing --------------------------------------------------------------

    def call(self, cmd: int, payload: bytes = b"") -> bytes:
        """Send one request; return its reply payload (b"" for commands without one)."""
        self._send(cmd, [payload])
        return self._recv_reply() if expects_reply(cmd) else b""

    def _remaining(self) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise GgmlError(f"ggml worker {self.endpoint} did not answer in time")
        return left

    def _send(self, cmd: int, parts: Sequence[bytes | memoryview]) -> None:
        size = sum(len(p) for p in parts)
        header = bytes((cmd,)) + _U64.pack(size)
        try:
            self._sock.settimeout(self._remaining())
            self._sock.sendall(header)
            for part in parts:
                self._sock.sendall(part)
        except OSError as exc:
            raise GgmlError(f"ggml worker {self.endpoint}: {exc}") from exc

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        try:
            while got < n:
                self._sock.settimeout(self._remaining())
                k = self._sock.recv_into(view[got:])
                if k == 0:
                    raise GgmlError(f"ggml worker {self.endpoint} closed the connection (request refused)")
                got += k
        except TimeoutError as exc:
            raise GgmlError(f"ggml worker {self.endpoint} did not answer in time") from exc
        except GgmlError:
            raise
        except OSError as exc:
            raise GgmlError(f"ggml worker {self.endpoint}: {exc}") from exc
        return bytes(buf)

    def _recv_reply(self) -> bytes:
        (size,) = _U64.unpack(self._recv_exact(8))
        if size > 1 << 32:
            raise GgmlError(f"ggml worker {self.endpoint} sent an implausible reply of {size} bytes")
        return self._recv_exact(size)
