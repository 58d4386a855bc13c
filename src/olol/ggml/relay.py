"""What both ends of the tunnel's data path share: one side of a socket-to-socket byte relay.

Each connection is a pair of Protocols, one per socket, each writing what the
other reads. When the socket a side writes to backs up (asyncio calls its
`pause_writing`), the side feeding it must stop reading, or a fast sender
(weights at load) would queue without bound in this process.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, cast

__all__ = ["RelaySide", "adopt"]


class RelaySide(asyncio.Protocol):
    """Subclasses say which transport feeds the socket this side writes to (`feeder`)."""

    def feeder(self) -> asyncio.Transport | None:
        raise NotImplementedError

    def pause_writing(self) -> None:
        source = self.feeder()
        if source is not None:
            source.pause_reading()

    def resume_writing(self) -> None:
        source = self.feeder()
        if source is not None and not source.is_closing():
            source.resume_reading()


def adopt(transport: asyncio.BaseTransport, high_water: int) -> asyncio.Transport:
    """The transport as a relay uses it: no Nagle delay on a token's few bytes, and `high_water` bytes
    queued before the feeding side is paused. (uvloop's transports are not asyncio.Transport
    subclasses, hence the cast.)"""
    sock: Any = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stream = cast(asyncio.Transport, transport)
    stream.set_write_buffer_limits(high=high_water)
    return stream
