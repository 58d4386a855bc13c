"""Incremental parser of the ggml RPC byte stream (protocol 7.0.0).

Pure-Python twin of `framing_c.pyx` (same API, same behaviour); import the
facade `olol._fast.framing` rather than this module. Protocol facts live in
`_rpc_proto`.

Copies are what this parser exists to avoid, so:

* frames wholly inside a fed chunk are views of it when the chunk is immutable
  (`bytes`, or a read-only buffer, which is assumed not to change); a mutable
  chunk (a reused `recv_into` buffer) is copied once, in one piece, because the
  caller may overwrite it as soon as `feed` returns;
* a frame spanning chunks is assembled in a buffer of exactly its size,
  allocated when its header is complete, so each byte is copied once and never
  moved again (no growing buffer to trim).

`max_payload` is checked before that allocation: a hostile header cannot make
the parser reserve more than the caller allowed.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

from olol._fast._rpc_proto import (
    COMMAND_COUNT,
    REPLY_HEADER_SIZE,
    REPLY_SIZE,
    REQUEST_HEADER_SIZE,
    REQUEST_MIN_SIZE,
    REQUEST_SIZE,
    UNTRACKED,
    FramingError,
    ParserStats,
    RpcCommand,
    command_name,
    encode_reply,
    encode_request,
    expects_reply,
    regroup,
    stats_from_counters,
)

__all__ = [
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

Direction = Literal["request", "reply"]


class Frame:
    """One complete message: `cmd` (UNTRACKED for a reply of an unknown request),
    `raw` (header and payload as on the wire) and `payload`, both read-only views."""

    __slots__ = ("cmd", "payload", "raw")

    def __init__(self, cmd: int, raw: memoryview, header_size: int) -> None:
        self.cmd = cmd
        self.raw = raw
        self.payload = raw[header_size:]

    @property
    def size(self) -> int:
        """Payload length in bytes."""
        return len(self.payload)

    def __repr__(self) -> str:
        return f"Frame({command_name(self.cmd)}, size={len(self.payload)})"


class FrameParser:
    """Split a ggml RPC stream, fed in chunks of any size, into frames.

    `direction` is "request" (client to server) or "reply". Replies do not name
    their command, so a reply parser tags each reply with the command passed to
    `expect` for it, in order (a proxy calls `expect(frame.cmd)` for each request
    frame where `expects_reply(frame.cmd)`), and then also checks its size;
    replies nobody announced are tagged UNTRACKED. `handshake=True` (requests
    only) additionally demands HELLO first and never again, as the server does.
    After a FramingError the stream cannot be resynchronised and every later
    `feed` raises too.
    """

    def __init__(self, direction: Direction, max_payload: int, *, handshake: bool = False) -> None:
        if direction not in ("request", "reply"):
            raise ValueError(f"direction must be 'request' or 'reply', not {direction!r}")
        if max_payload < 0:
            raise ValueError("max_payload must not be negative")
        if handshake and direction != "request":
            raise ValueError("handshake applies to the request direction only")
        self.direction: Direction = direction
        self.max_payload = max_payload
        self.handshake = handshake
        self._requests = direction == "request"
        self._header_size = REQUEST_HEADER_SIZE if self._requests else REPLY_HEADER_SIZE
        self._head = bytearray()  # a header cut by a chunk boundary
        self._body: bytearray | None = None  # a frame cut by a chunk boundary: header + payload
        self._filled = 0
        self._body_cmd = UNTRACKED
        self._expected: deque[int] = deque()
        self._hello_seen = False
        self._offset = 0  # stream offset of the chunk being fed, for error messages
        self._error: str | None = None
        self._counts = [0] * (COMMAND_COUNT + 1)  # the last slot counts UNTRACKED replies
        self._bytes = [0] * (COMMAND_COUNT + 1)

    # -- public -------------------------------------------------------------

    def expect(self, cmd: int) -> None:
        """Announce that the next unannounced reply answers request `cmd` (reply parsers only)."""
        if self._requests:
            raise ValueError("expect() is for reply parsers")
        if not expects_reply(cmd):
            raise ValueError(f"{command_name(cmd)} has no reply")
        self._expected.append(cmd)

    @property
    def pending_replies(self) -> int:
        """Replies announced with `expect` and not yet started."""
        return len(self._expected)

    @property
    def buffered(self) -> int:
        """Bytes held for a frame that is not complete yet (0 at a frame boundary)."""
        return len(self._head) + (self._filled if self._body is not None else 0)

    @property
    def stats(self) -> ParserStats:
        """Frames completed so far and their wire bytes, in total and per command."""
        return stats_from_counters(self._counts, self._bytes)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Consume the next chunk of the stream; return the frames it completes, in order."""
        if self._error is not None:
            raise FramingError(f"parser failed earlier: {self._error}")
        view = memoryview(data)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        frames: list[Frame] = []
        spans: list[tuple[int, int, int]] = []  # (cmd, start, end) of frames inside this chunk
        try:
            self._consume(view, frames, spans)
        except FramingError as exc:
            self._error = str(exc)
            self._emit_spans(data, view, spans, frames)
            raise FramingError(str(exc), frames) from None
        self._emit_spans(data, view, spans, frames)
        self._offset += len(view)
        return frames

    # -- internals ----------------------------------------------------------

    def _consume(self, view: memoryview, frames: list[Frame], spans: list[tuple[int, int, int]]) -> None:
        n = len(view)
        hsize = self._header_size
        pos = self._resume(view, frames) if (self._head or self._body is not None) else 0
        while pos < n:
            if n - pos < hsize:
                self._head += view[pos:n]
                return
            if self._requests:
                cmd = view[pos]
                size = int.from_bytes(view[pos + 1 : pos + 9], "little")
            else:
                cmd = UNTRACKED
                size = int.from_bytes(view[pos : pos + 8], "little")
            tag = self._check(cmd, size, self._offset + pos)
            end = pos + hsize + size
            if end <= n:
                spans.append((tag, pos, end))
                pos = end
            else:
                self._start_body(tag, hsize + size, view[pos:n])
                return

    def _resume(self, view: memoryview, frames: list[Frame]) -> int:
        """Continue the frame a previous chunk cut; return how much of `view` it used."""
        pos = 0
        hsize = self._header_size
        if self._head:
            pos = min(hsize - len(self._head), len(view))
            self._head += view[:pos]
            if len(self._head) < hsize:
                return pos
            head = bytes(self._head)
            self._head.clear()
            if self._requests:
                cmd, size = head[0], int.from_bytes(head[1:9], "little")
            else:
                cmd, size = UNTRACKED, int.from_bytes(head[0:8], "little")
            tag = self._check(cmd, size, self._offset + pos - hsize)
            self._start_body(tag, hsize + size, memoryview(head))
        body = self._body
        assert body is not None
        take = min(len(body) - self._filled, len(view) - pos)
        body[self._filled : self._filled + take] = view[pos : pos + take]
        self._filled += take
        pos += take
        if self._filled == len(body):
            self._body = None
            frames.append(self._count(Frame(self._body_cmd, memoryview(body).toreadonly(), hsize)))
        return pos

    def _start_body(self, cmd: int, total: int, first: memoryview) -> None:
        body = bytearray(total)
        body[: len(first)] = first
        self._body, self._filled, self._body_cmd = body, len(first), cmd

    def _check(self, cmd: int, size: int, offset: int) -> int:
        """Validate a header; return the command to tag the frame with."""
        if self._requests:
            if cmd >= COMMAND_COUNT:
                raise FramingError(f"unknown ggml RPC command {cmd} at stream offset {offset}")
            self._check_size(cmd, size, offset)
            if self.handshake:
                if (cmd == RpcCommand.HELLO) == self._hello_seen:
                    rule = "repeated HELLO" if self._hello_seen else f"{command_name(cmd)} before HELLO"
                    raise FramingError(f"{rule} at stream offset {offset}")
                self._hello_seen = True
            fixed = REQUEST_SIZE[cmd]
            if fixed >= 0 and size != fixed:
                raise FramingError(
                    f"{command_name(cmd)} payload must be {fixed} bytes, got {size} at stream offset {offset}"
                )
            if size < REQUEST_MIN_SIZE[cmd]:
                raise FramingError(
                    f"{command_name(cmd)} payload must be at least {REQUEST_MIN_SIZE[cmd]} bytes, "
                    f"got {size} at stream offset {offset}"
                )
            return cmd
        cmd = self._expected.popleft() if self._expected else UNTRACKED
        self._check_size(cmd, size, offset)
        fixed = REPLY_SIZE[cmd] if cmd != UNTRACKED else -1
        if fixed >= 0 and size != fixed:
            raise FramingError(f"{command_name(cmd)} reply must be {fixed} bytes, got {size} at stream offset {offset}")
        return cmd

    def _check_size(self, cmd: int, size: int, offset: int) -> None:
        if size > self.max_payload:
            raise FramingError(
                f"{command_name(cmd)} payload of {size} bytes at stream offset {offset} "
                f"exceeds max_payload {self.max_payload}"
            )

    def _count(self, frame: Frame) -> Frame:
        slot = COMMAND_COUNT if frame.cmd == UNTRACKED else frame.cmd
        self._counts[slot] += 1
        self._bytes[slot] += len(frame.raw)
        return frame

    def _emit_spans(
        self,
        data: bytes | bytearray | memoryview,
        view: memoryview,
        spans: list[tuple[int, int, int]],
        frames: list[Frame],
    ) -> None:
        if not spans:
            return
        hsize = self._header_size
        shift = 0
        base = view
        if not (isinstance(data, bytes) or view.readonly):
            # One copy covering every frame of the chunk; the caller may reuse its buffer.
            shift = spans[0][1]
            base = memoryview(bytes(view[shift : spans[-1][2]]))
        elif not view.readonly:
            base = view.toreadonly()
        for cmd, start, end in spans:
            frames.append(self._count(Frame(cmd, base[start - shift : end - shift], hsize)))
