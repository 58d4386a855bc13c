"""Facts about the ggml RPC wire protocol (7.0.0) that both framing implementations share.

Source: llama.cpp `ggml/src/ggml-rpc/ggml-rpc.cpp` as vendored by
llama-cpp-python 0.3.36 (`enum rpc_cmd`, the `rpc_msg_*` structs, which are
`#pragma pack(1)`, and `rpc_serve_client`). The sizes below were checked by
compiling those structs.

    request = cmd:u8 | size:u64 LE | payload[size]
    reply   =          size:u64 LE | payload[size]

The server drops the connection on any command >= RPC_CMD_NONE (18) and on a
fixed-size message of the wrong size, so the parser rejects the same streams.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

__all__ = [
    "COMMAND_COUNT",
    "EXPECTS_REPLY",
    "PROTOCOL_VERSION",
    "REPLY_HEADER_SIZE",
    "REPLY_SIZE",
    "REQUEST_HEADER_SIZE",
    "REQUEST_MIN_SIZE",
    "REQUEST_SIZE",
    "UNTRACKED",
    "FrameLike",
    "FramingError",
    "ParserStats",
    "RpcCommand",
    "command_name",
    "encode_reply",
    "encode_request",
    "expects_reply",
    "regroup",
]

PROTOCOL_VERSION = (7, 0, 0)
REQUEST_HEADER_SIZE = 9
REPLY_HEADER_SIZE = 8
# `Frame.cmd` of a reply whose request the parser was not told about (see FrameParser.expect).
UNTRACKED = -1


class RpcCommand(IntEnum):
    ALLOC_BUFFER = 0
    GET_ALIGNMENT = 1
    GET_MAX_SIZE = 2
    BUFFER_GET_BASE = 3
    FREE_BUFFER = 4
    BUFFER_CLEAR = 5
    SET_TENSOR = 6
    SET_TENSOR_HASH = 7
    GET_TENSOR = 8
    COPY_TENSOR = 9
    GRAPH_COMPUTE = 10
    GET_DEVICE_MEMORY = 11
    INIT_TENSOR = 12
    GET_ALLOC_SIZE = 13
    HELLO = 14  # llama.cpp static_asserts this one never moves
    DEVICE_COUNT = 15
    GRAPH_RECOMPUTE = 16
    MEMSET_TENSOR = 17


# RPC_CMD_NONE (18) is an in-process marker of the client's dispatcher, never sent.
COMMAND_COUNT = len(RpcCommand)

_RPC_TENSOR = 296  # sizeof(rpc_tensor)
_VARIABLE = -1

# Payload size of each request: fixed, or _VARIABLE with a minimum in REQUEST_MIN_SIZE.
REQUEST_SIZE: tuple[int, ...] = (
    12,  # ALLOC_BUFFER: device u32, size u64
    4,  # GET_ALIGNMENT: device u32
    4,  # GET_MAX_SIZE: device u32
    8,  # BUFFER_GET_BASE: remote_ptr u64
    8,  # FREE_BUFFER: remote_ptr u64
    9,  # BUFFER_CLEAR: remote_ptr u64, value u8
    _VARIABLE,  # SET_TENSOR: rpc_tensor, cache_flag u8, offset u64, data
    _RPC_TENSOR + 16,  # SET_TENSOR_HASH: rpc_tensor, offset u64, hash u64
    _RPC_TENSOR + 16,  # GET_TENSOR: rpc_tensor, offset u64, size u64
    2 * _RPC_TENSOR,  # COPY_TENSOR: src, dst
    _VARIABLE,  # GRAPH_COMPUTE: device u32, n_nodes u32, nodes, n_tensors u32, tensors
    4,  # GET_DEVICE_MEMORY: device u32
    _RPC_TENSOR,  # INIT_TENSOR
    4 + 11 * _RPC_TENSOR,  # GET_ALLOC_SIZE: device u32, tensor, srcs[GGML_MAX_SRC=10]
    24,  # HELLO: conn_caps[24]
    0,  # DEVICE_COUNT
    4,  # GRAPH_RECOMPUTE: device u32
    _RPC_TENSOR + 17,  # MEMSET_TENSOR: rpc_tensor, offset u64, size u64, value u8
)
# The least a variable-size request can be before the server rejects it: SET_TENSOR
# without data (rpc_tensor, cache_flag u8, offset u64), GRAPH_COMPUTE of an empty
# graph (device, n_nodes = 0, n_tensors = 0). Fixed sizes are their own minimum.
_VARIABLE_MIN = {RpcCommand.SET_TENSOR: _RPC_TENSOR + 9, RpcCommand.GRAPH_COMPUTE: 12}
REQUEST_MIN_SIZE: tuple[int, ...] = tuple(
    _VARIABLE_MIN.get(cmd, size) for cmd, size in zip(RpcCommand, REQUEST_SIZE, strict=True)
)

# Whether the server answers each command (FREE_BUFFER, BUFFER_CLEAR, SET_TENSOR,
# GRAPH_COMPUTE, INIT_TENSOR, GRAPH_RECOMPUTE and MEMSET_TENSOR are fire-and-forget).
EXPECTS_REPLY: tuple[bool, ...] = (
    True,  # ALLOC_BUFFER
    True,  # GET_ALIGNMENT
    True,  # GET_MAX_SIZE
    True,  # BUFFER_GET_BASE
    False,  # FREE_BUFFER
    False,  # BUFFER_CLEAR
    False,  # SET_TENSOR
    True,  # SET_TENSOR_HASH
    True,  # GET_TENSOR
    True,  # COPY_TENSOR
    False,  # GRAPH_COMPUTE
    True,  # GET_DEVICE_MEMORY
    False,  # INIT_TENSOR
    True,  # GET_ALLOC_SIZE
    True,  # HELLO
    True,  # DEVICE_COUNT
    False,  # GRAPH_RECOMPUTE
    False,  # MEMSET_TENSOR
)

# Reply payload sizes (_VARIABLE: GET_TENSOR returns the bytes asked for; and no reply at all).
REPLY_SIZE: tuple[int, ...] = (
    16,  # ALLOC_BUFFER: remote_ptr u64, remote_size u64
    8,  # GET_ALIGNMENT
    8,  # GET_MAX_SIZE
    8,  # BUFFER_GET_BASE
    _VARIABLE,
    _VARIABLE,
    _VARIABLE,
    1,  # SET_TENSOR_HASH: result u8
    _VARIABLE,  # GET_TENSOR
    1,  # COPY_TENSOR: result u8
    _VARIABLE,
    16,  # GET_DEVICE_MEMORY: free u64, total u64
    _VARIABLE,
    8,  # GET_ALLOC_SIZE
    28,  # HELLO: major, minor, patch, pad, conn_caps[24]
    4,  # DEVICE_COUNT: u32
    _VARIABLE,
    _VARIABLE,
)


class FrameLike(Protocol):
    """What both implementations' Frame classes offer."""

    @property
    def cmd(self) -> int: ...
    @property
    def raw(self) -> memoryview: ...
    @property
    def payload(self) -> memoryview: ...


class FramingError(ValueError):
    """The byte stream is not valid ggml RPC; the connection cannot be resynchronised.

    `frames` holds the frames completed by the failing `feed` call before the bad
    header, so a proxy can still forward them before closing.
    """

    def __init__(self, message: str, frames: Sequence[FrameLike] = ()) -> None:
        super().__init__(message)
        self.frames: list[FrameLike] = list(frames)


def command_name(cmd: int) -> str:
    """`SET_TENSOR` for 6, `UNTRACKED` for replies of unknown requests."""
    if cmd == UNTRACKED:
        return "UNTRACKED"
    return RpcCommand(cmd).name


def expects_reply(cmd: int) -> bool:
    """Whether the server sends a reply to request `cmd` (ValueError for an unknown command)."""
    if not 0 <= cmd < COMMAND_COUNT:
        raise ValueError(f"unknown ggml RPC command {cmd}")
    return EXPECTS_REPLY[cmd]


@dataclass(frozen=True)
class ParserStats:
    """What a FrameParser has seen: completed frames and their bytes on the wire (headers included)."""

    frames: int = 0
    bytes: int = 0
    # By command name (`command_name`), only commands seen.
    commands: dict[str, int] = field(default_factory=dict)
    command_bytes: dict[str, int] = field(default_factory=dict)


def stats_from_counters(counts: list[int], wire_bytes: list[int]) -> ParserStats:
    """Build ParserStats from per-command counters indexed by cmd, the last slot being UNTRACKED."""
    commands: dict[str, int] = {}
    command_bytes: dict[str, int] = {}
    for index, count in enumerate(counts):
        if count:
            name = command_name(UNTRACKED if index == COMMAND_COUNT else index)
            commands[name] = count
            command_bytes[name] = wire_bytes[index]
    return ParserStats(sum(counts), sum(wire_bytes), commands, command_bytes)


def encode_request(cmd: int, payload: bytes | bytearray | memoryview = b"") -> bytes:
    """One request frame, as a ggml RPC client sends it."""
    if not 0 <= cmd < COMMAND_COUNT:
        raise ValueError(f"unknown ggml RPC command {cmd}")
    return bytes((cmd,)) + len(payload).to_bytes(8, "little") + bytes(payload)


def encode_reply(payload: bytes | bytearray | memoryview = b"") -> bytes:
    """One reply frame, as the ggml RPC server sends it."""
    return len(payload).to_bytes(8, "little") + bytes(payload)


class _HasRaw(Protocol):
    @property
    def raw(self) -> memoryview: ...


def regroup(frames: Iterable[_HasRaw], max_message_bytes: int) -> list[bytes]:
    """Pack frames, in order, into chunks of at most `max_message_bytes` (e.g. gRPC messages).

    Chunks break between frames; only a frame larger than a whole chunk is cut,
    filling the current chunk first, so the fewest messages carry the stream.
    Concatenating the chunks gives back the original byte stream. One copy per
    byte (the join), which is what building a gRPC message costs anyway, so
    this is shared by both implementations rather than twinned.
    """
    if max_message_bytes <= 0:
        raise ValueError("max_message_bytes must be positive")
    chunks: list[bytes] = []
    parts: list[memoryview] = []
    used = 0
    for frame in frames:
        raw = frame.raw
        while True:
            size = len(raw)
            room = max_message_bytes - used
            if size <= room:
                if size:
                    parts.append(raw)
                    used += size
                break
            if size <= max_message_bytes:
                # Fits a chunk of its own: start one rather than cut the frame.
                chunks.append(b"".join(parts))
                parts, used = [raw], size
                break
            parts.append(raw[:room])
            chunks.append(b"".join(parts))
            parts, used, raw = [], 0, raw[room:]
    if parts:
        chunks.append(b"".join(parts))
    return chunks
