# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twin of `_framing_py` (same API and behaviour; see that module for the design).

What compiling buys: headers are read straight from the chunk's buffer instead
of through slices and int.from_bytes, the spans of a chunk's frames live in a C
array, and a frame cut by a chunk boundary is completed with one memcpy. A
frame's `raw` view is made on first use only: the tunnel reads `cmd` and
forwards whole chunks, so on its hot path no per-frame view is ever built.
"""

cimport cython

from collections import deque

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from libc.string cimport memcpy

from olol._fast._rpc_proto import (
    COMMAND_COUNT as _COMMAND_COUNT,
    REPLY_HEADER_SIZE,
    REPLY_SIZE as _REPLY_SIZE,
    REQUEST_HEADER_SIZE,
    REQUEST_MIN_SIZE as _REQUEST_MIN_SIZE,
    REQUEST_SIZE as _REQUEST_SIZE,
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

cdef enum:
    MAX_COMMANDS = 32  # C array bound; COMMAND_COUNT is checked against it below
    HELLO = 14

cdef int N_COMMANDS = _COMMAND_COUNT
assert N_COMMANDS < MAX_COMMANDS and _COMMAND_COUNT == len(_REQUEST_SIZE)
assert int(RpcCommand.HELLO) == HELLO
cdef long long REQ_SIZE[MAX_COMMANDS]
cdef long long REQ_MIN[MAX_COMMANDS]
cdef long long REP_SIZE[MAX_COMMANDS]
for _i in range(N_COMMANDS):
    REQ_SIZE[_i] = _REQUEST_SIZE[_i]
    REQ_MIN[_i] = _REQUEST_MIN_SIZE[_i]
    REP_SIZE[_i] = _REPLY_SIZE[_i]

ctypedef unsigned long long u64

cdef struct Span:
    int cmd
    Py_ssize_t start
    Py_ssize_t end


cdef inline u64 _le64(const unsigned char* p) noexcept nogil:
    # Byte by byte so it is right on any host; compilers turn it into one load.
    return (<u64>p[0] | (<u64>p[1] << 8) | (<u64>p[2] << 16) | (<u64>p[3] << 24)
            | (<u64>p[4] << 32) | (<u64>p[5] << 40) | (<u64>p[6] << 48) | (<u64>p[7] << 56))


@cython.freelist(64)
cdef class Frame:
    """One complete message: `cmd` (UNTRACKED for a reply of an unknown request),
    `raw` (header and payload as on the wire) and `payload`, both read-only views."""

    cdef readonly int cmd
    cdef object _base  # read-only byte view the frame lies in
    cdef Py_ssize_t _start
    cdef Py_ssize_t _end
    cdef Py_ssize_t _hsize
    cdef object _raw  # base[start:end], made on first use

    def __init__(self, int cmd, raw, int header_size):
        self.cmd = cmd
        self._base = self._raw = raw
        self._start = 0
        self._end = len(raw)
        self._hsize = header_size

    @property
    def raw(self):
        if self._raw is None:
            self._raw = self._base[self._start:self._end]
        return self._raw

    @property
    def payload(self):
        return self._base[self._start + self._hsize:self._end]

    @property
    def size(self):
        """Payload length in bytes."""
        return self._end - self._start - self._hsize

    def __repr__(self):
        return f"Frame({command_name(self.cmd)}, size={self.size})"


cdef inline Frame _make_frame(int cmd, object base, Py_ssize_t start, Py_ssize_t end, Py_ssize_t hsize):
    cdef Frame frame = Frame.__new__(Frame)
    frame.cmd = cmd
    frame._base = base
    frame._start = start
    frame._end = end
    frame._hsize = hsize
    return frame


cdef class FrameParser:
    """Split a ggml RPC stream, fed in chunks of any size, into frames (see `_framing_py`)."""

    cdef readonly str direction
    cdef readonly object max_payload
    cdef readonly bint handshake
    cdef bint _requests
    cdef Py_ssize_t _hsize
    cdef u64 _max
    cdef unsigned char _head[9]
    cdef Py_ssize_t _head_len
    cdef bytearray _body
    cdef Py_ssize_t _filled
    cdef int _body_cmd
    cdef object _expected
    cdef bint _hello_seen
    cdef long long _offset
    cdef object _error
    cdef long long _counts[MAX_COMMANDS]
    cdef long long _bytes[MAX_COMMANDS]
    cdef Span* _spans  # frames found in the chunk being fed, turned into Frames at its end
    cdef Py_ssize_t _span_cap
    cdef Py_ssize_t _last_spans  # spans recorded before a FramingError

    def __init__(self, str direction, max_payload, *, bint handshake=False):
        if direction not in ("request", "reply"):
            raise ValueError(f"direction must be 'request' or 'reply', not {direction!r}")
        if max_payload < 0:
            raise ValueError("max_payload must not be negative")
        if handshake and direction != "request":
            raise ValueError("handshake applies to the request direction only")
        self.direction = direction
        self.max_payload = max_payload
        self.handshake = handshake
        self._requests = direction == "request"
        self._hsize = REQUEST_HEADER_SIZE if self._requests else REPLY_HEADER_SIZE
        # Sizes on the wire are u64: a larger limit is no limit.
        self._max = <u64>min(max_payload, 0xFFFFFFFFFFFFFFFF)
        self._head_len = 0
        self._body = None
        self._filled = 0
        self._body_cmd = UNTRACKED
        self._expected = deque()
        self._hello_seen = False
        self._offset = 0
        self._error = None
        cdef int i
        for i in range(MAX_COMMANDS):
            self._counts[i] = 0
            self._bytes[i] = 0

    def __dealloc__(self):
        PyMem_Free(self._spans)

    # -- public -------------------------------------------------------------

    def expect(self, int cmd):
        """Announce that the next unannounced reply answers request `cmd` (reply parsers only)."""
        if self._requests:
            raise ValueError("expect() is for reply parsers")
        if not expects_reply(cmd):
            raise ValueError(f"{command_name(cmd)} has no reply")
        self._expected.append(cmd)

    @property
    def pending_replies(self):
        """Replies announced with `expect` and not yet started."""
        return len(self._expected)

    @property
    def buffered(self):
        """Bytes held for a frame that is not complete yet (0 at a frame boundary)."""
        return self._head_len + (self._filled if self._body is not None else 0)

    @property
    def stats(self):
        """Frames completed so far and their wire bytes, in total and per command."""
        counts = [self._counts[i] for i in range(N_COMMANDS + 1)]
        wire_bytes = [self._bytes[i] for i in range(N_COMMANDS + 1)]
        return stats_from_counters(counts, wire_bytes)

    def feed(self, data):
        """Consume the next chunk of the stream; return the frames it completes, in order."""
        if self._error is not None:
            raise FramingError(f"parser failed earlier: {self._error}")
        cdef Py_buffer pb
        # Any C-contiguous buffer, read as bytes whatever its item format (as memoryview.cast("B")).
        PyObject_GetBuffer(data, &pb, PyBUF_SIMPLE)
        cdef list frames = []
        cdef Py_ssize_t n_spans = 0
        cdef bint readonly = pb.readonly
        try:
            if pb.len == 0:
                return frames
            try:
                n_spans = self._consume(<const unsigned char*>pb.buf, pb.len, frames)
            except FramingError as exc:
                self._error = str(exc)
                # Frames found before the bad header are still good: hand them over with the error.
                self._emit(data, readonly, self._last_spans, frames)
                raise FramingError(str(exc), frames) from None
            self._emit(data, readonly, n_spans, frames)
            self._offset += pb.len
        finally:
            PyBuffer_Release(&pb)
        return frames

    # -- internals ----------------------------------------------------------

    cdef Py_ssize_t _consume(self, const unsigned char* buf, Py_ssize_t n, list frames) except -1:
        cdef Py_ssize_t hsize = self._hsize
        cdef Py_ssize_t pos = 0
        cdef Py_ssize_t n_spans = 0
        cdef int cmd, tag
        cdef u64 size
        self._last_spans = 0
        if self._head_len or self._body is not None:
            pos = self._resume(buf, n, frames)
        while pos < n:
            if n - pos < hsize:
                memcpy(&self._head[0], &buf[pos], n - pos)
                self._head_len = n - pos
                break
            if self._requests:
                cmd = buf[pos]
                size = _le64(&buf[pos + 1])
            else:
                cmd = UNTRACKED
                size = _le64(&buf[pos])
            tag = self._check(cmd, size, self._offset + pos)
            if size <= <u64>(n - pos - hsize):
                if n_spans == self._span_cap:
                    self._grow_spans()
                self._spans[n_spans].cmd = tag
                self._spans[n_spans].start = pos
                pos += hsize + <Py_ssize_t>size
                self._spans[n_spans].end = pos
                n_spans += 1
                self._last_spans = n_spans
            else:
                self._start_body(tag, hsize + <Py_ssize_t>size, &buf[pos], n - pos)
                break
        return n_spans

    cdef int _grow_spans(self) except -1:
        cdef Py_ssize_t cap = self._span_cap * 2 if self._span_cap else 64
        cdef Span* grown = <Span*>PyMem_Realloc(self._spans, cap * sizeof(Span))
        if grown is NULL:
            raise MemoryError()
        self._spans = grown
        self._span_cap = cap
        return 0

    cdef Py_ssize_t _resume(self, const unsigned char* buf, Py_ssize_t n, list frames) except -1:
        cdef Py_ssize_t hsize = self._hsize
        cdef Py_ssize_t pos = 0
        cdef Py_ssize_t take
        cdef int cmd, tag
        cdef u64 size
        if self._head_len:
            pos = min(hsize - self._head_len, n)
            memcpy(&self._head[self._head_len], &buf[0], pos)
            self._head_len += pos
            if self._head_len < hsize:
                return pos
            self._head_len = 0
            if self._requests:
                cmd = self._head[0]
                size = _le64(&self._head[1])
            else:
                cmd = UNTRACKED
                size = _le64(&self._head[0])
            tag = self._check(cmd, size, self._offset + pos - hsize)
            self._start_body(tag, hsize + <Py_ssize_t>size, &self._head[0], hsize)
        cdef Py_ssize_t total = len(self._body)
        take = min(total - self._filled, n - pos)
        if take:
            memcpy(PyByteArray_AS_STRING(self._body) + self._filled, &buf[pos], take)
        self._filled += take
        pos += take
        if self._filled == total:
            body = self._body
            self._body = None
            frame = _make_frame(self._body_cmd, memoryview(body).toreadonly(), 0, total, hsize)
            self._count(frame.cmd, total)
            frames.append(frame)
        return pos

    cdef int _start_body(self, int cmd, Py_ssize_t total, const unsigned char* first, Py_ssize_t n) except -1:
        # Uninitialised: every byte is written by the copies that complete the frame.
        self._body = PyByteArray_FromStringAndSize(NULL, total)
        memcpy(PyByteArray_AS_STRING(self._body), first, n)
        self._filled = n
        self._body_cmd = cmd
        return 0

    cdef int _check(self, int cmd, u64 size, long long offset) except -100:
        cdef long long fixed
        if self._requests:
            if cmd >= N_COMMANDS:
                raise FramingError(f"unknown ggml RPC command {cmd} at stream offset {offset}")
            self._check_size(cmd, size, offset)
            if self.handshake:
                if (cmd == HELLO) == self._hello_seen:
                    rule = "repeated HELLO" if self._hello_seen else f"{command_name(cmd)} before HELLO"
                    raise FramingError(f"{rule} at stream offset {offset}")
                self._hello_seen = True
            fixed = REQ_SIZE[cmd]
            if fixed >= 0 and size != <u64>fixed:
                raise FramingError(
                    f"{command_name(cmd)} payload must be {fixed} bytes, got {size} at stream offset {offset}"
                )
            if size < <u64>REQ_MIN[cmd]:
                raise FramingError(
                    f"{command_name(cmd)} payload must be at least {REQ_MIN[cmd]} bytes, "
                    f"got {size} at stream offset {offset}"
                )
            return cmd
        cmd = self._expected.popleft() if self._expected else UNTRACKED
        self._check_size(cmd, size, offset)
        fixed = REP_SIZE[cmd] if cmd != UNTRACKED else -1
        if fixed >= 0 and size != <u64>fixed:
            raise FramingError(
                f"{command_name(cmd)} reply must be {fixed} bytes, got {size} at stream offset {offset}"
            )
        return cmd

    cdef int _check_size(self, int cmd, u64 size, long long offset) except -1:
        if size > self._max:
            raise FramingError(
                f"{command_name(cmd)} payload of {size} bytes at stream offset {offset} "
                f"exceeds max_payload {self.max_payload}"
            )
        return 0

    cdef inline void _count(self, int cmd, Py_ssize_t wire_bytes) noexcept:
        cdef int slot = N_COMMANDS if cmd == UNTRACKED else cmd
        self._counts[slot] += 1
        self._bytes[slot] += wire_bytes

    cdef int _emit(self, object data, bint readonly, Py_ssize_t n_spans, list frames) except -1:
        if not n_spans:
            return 0
        cdef Py_ssize_t hsize = self._hsize
        cdef Py_ssize_t shift = 0
        cdef Py_ssize_t i
        cdef Span* span
        if not (readonly or isinstance(data, bytes)):
            # One copy covering every frame of the chunk; the caller may reuse its buffer.
            shift = self._spans[0].start
            view = memoryview(data)
            if view.ndim != 1 or view.itemsize != 1:
                view = view.cast("B")
            base = memoryview(bytes(view[shift:self._spans[n_spans - 1].end]))
        else:
            base = memoryview(data)
            if base.ndim != 1 or base.itemsize != 1:
                base = base.cast("B")
            if not base.readonly:
                base = base.toreadonly()
        for i in range(n_spans):
            span = &self._spans[i]
            frames.append(_make_frame(span.cmd, base, span.start - shift, span.end - shift, hsize))
            self._count(span.cmd, span.end - span.start)
        return 0
