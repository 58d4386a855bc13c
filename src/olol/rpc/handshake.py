"""The one part of ggml's handshake a tunnel rewrites: HELLO's conn_caps, both ways.

Protocol 7 lets a client and worker agree in HELLO on a transport upgrade
(RDMA) that bypasses the TCP connection. A tunnel carries only that
connection, so the worker is offered no caps and the client is told of none.
"""

from __future__ import annotations

from olol._fast.framing import RpcCommand, encode_request
from olol.rpc.ggml_client import CONN_CAPS_SIZE

__all__ = ["CLEAN_HELLO", "HELLO_REPLY_END", "clear_hello_caps"]

CLEAN_HELLO = encode_request(RpcCommand.HELLO, bytes(CONN_CAPS_SIZE))
# HELLO reply: size u64, then major, minor, patch, pad, conn_caps[24].
_CAPS = slice(12, 12 + CONN_CAPS_SIZE)
HELLO_REPLY_END = _CAPS.stop  # bytes of the worker's stream that may need rewriting


def clear_hello_caps(data: bytes, offset: int) -> bytes:
    """Zero the HELLO reply's conn_caps in `data`, which starts `offset` bytes into the worker's stream."""
    start = max(_CAPS.start - offset, 0)
    stop = min(_CAPS.stop - offset, len(data))
    if start >= stop:
        return data
    return data[:start] + bytes(stop - start) + data[stop:]
