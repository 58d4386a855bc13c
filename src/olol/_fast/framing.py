"""Incremental, copy-avoiding parser of the ggml RPC wire format (protocol 7.0.0).

Facade over the compiled `framing_c` or the pure-Python twin `_framing_py`
(picked by `olol._fast.load`); see `_framing_py` for the design and `_rpc_proto`
for the protocol facts.

    requests = FrameParser("request", max_payload=8 << 30, handshake=True)
    replies = FrameParser("reply", max_payload=8 << 30)
    for frame in requests.feed(chunk):
        if expects_reply(frame.cmd):
            replies.expect(frame.cmd)
    messages = regroup(frames, 4 << 20)  # gRPC-sized chunks of whole frames
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from olol._fast import load
from olol._fast._rpc_proto import (
    COMMAND_COUNT,
    PROTOCOL_VERSION,
    UNTRACKED,
    FramingError,
    ParserStats,
    RpcCommand,
    command_name,
    encode_reply,
    encode_request,
    expects_reply,
    regroup,
)

__all__ = [
    "COMMAND_COUNT",
    "IMPLEMENTATION",
    "PROTOCOL_VERSION",
    "UNTRACKED",
    "Frame",
    "FrameParser",
    "FramingError",
    "ParserStats",
    "RpcCommand",
    "command_name",
    "encode_reply",
    "encode_request",
    "expects_reply",
    "regroup",
]

if TYPE_CHECKING:
    from olol._fast._framing_py import Frame, FrameParser
else:
    _impl = load("framing")
    Frame = _impl.Frame
    FrameParser = _impl.FrameParser

# Module name of the implementation in use ("olol._fast.framing_c" or "olol._fast._framing_py").
IMPLEMENTATION: str = load("framing").__name__
