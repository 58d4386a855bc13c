# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twin of `_longstr_py` (same API and results; see that module for the design).

What compiling buys is memory more than speed: `decode` measures each literal
first (validating it and counting its characters and widest character, the
data untouched, so an invalid literal still lets the caller fall back), then
allocates each string once at its exact size and kind (`PyUnicode_New`) and
fills it in place, giving the literal's consumed pages back (madvise
MADV_DONTNEED on the caller's anonymous mmap) every `_RELEASE_STEP` bytes. So a
literal's bytes and its text never both stay resident, where `str(bytes)` holds
both whole. `has_long` walks dicts and lists at C speed: a writer asks it about
every body it sends, and the Python walk cost several times encoding a small one.
"""

import mmap

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.dict cimport PyDict_Next
from cpython.object cimport PyObject
from libc.stdint cimport uint8_t, uint16_t, uint32_t
from libc.string cimport memchr, memcpy

__all__ = ["decode", "find_long", "has_long"]

cdef extern from "Python.h":
    object PyUnicode_New(Py_ssize_t size, uint32_t maxchar)
    void* PyUnicode_DATA(object o)
    int PyUnicode_KIND(object o)

# Consumed bytes given back at a time: small against the body, large against a madvise call.
cdef Py_ssize_t _RELEASE_STEP = 1 << 20
cdef Py_ssize_t _PAGE = mmap.PAGESIZE
_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)


cdef inline bint _is_space(uint8_t c) noexcept nogil:
    return c == 0x20 or c == 0x09 or c == 0x0A or c == 0x0D


cdef Py_ssize_t _closing_quote(const uint8_t* p, Py_ssize_t pos, Py_ssize_t size) noexcept nogil:
    cdef const uint8_t* hit
    cdef Py_ssize_t end, slashes
    while True:
        hit = <const uint8_t*>memchr(p + pos, 0x22, size - pos)
        if hit == NULL:
            return -1
        end = hit - p
        slashes = 0
        while end - slashes - 1 >= pos and p[end - slashes - 1] == 0x5C:
            slashes += 1
        if slashes % 2 == 0:
            return end
        pos = end + 1


def find_long(data, Py_ssize_t threshold):
    cdef Py_buffer buf
    cdef const uint8_t* p
    cdef const uint8_t* hit
    cdef Py_ssize_t size, pos = 0, start, end, after
    spans = []
    PyObject_GetBuffer(data, &buf, PyBUF_SIMPLE)
    try:
        p = <const uint8_t*>buf.buf
        size = buf.len
        while True:
            hit = <const uint8_t*>memchr(p + pos, 0x22, size - pos) if pos < size else NULL
            if hit == NULL:
                return spans
            start = hit - p
            end = _closing_quote(p, start + 1, size)
            if end < 0:
                return None
            pos = end + 1
            if end - start - 1 >= threshold:
                after = pos
                while after < size and _is_space(p[after]):
                    after += 1
                if after < size and p[after] == 0x3A:
                    return None
                spans.append((start + 1, end))
    finally:
        PyBuffer_Release(&buf)


cdef inline int _hex(uint8_t c) noexcept nogil:
    if 0x30 <= c <= 0x39:
        return c - 0x30
    c |= 0x20
    if 0x61 <= c <= 0x66:
        return c - 0x61 + 10
    return -1


cdef inline int _hex4(const uint8_t* p, Py_ssize_t i, Py_ssize_t end, uint32_t* out) noexcept nogil:
    cdef int k, d
    cdef uint32_t v = 0
    if end - i < 4:
        return -1
    for k in range(4):
        d = _hex(p[i + k])
        if d < 0:
            return -1
        v = (v << 4) | <uint32_t>d
    out[0] = v
    return 0


cdef inline Py_ssize_t _next(const uint8_t* p, Py_ssize_t i, Py_ssize_t end, uint32_t* cp) noexcept nogil:
    """Decode one character at `i`; return the index after it, or -1 where the literal is not valid JSON text."""
    cdef uint8_t c = p[i], c1, c2, c3
    cdef uint32_t lo
    if c < 0x80:
        if c == 0x5C:
            if i + 1 >= end:
                return -1
            c = p[i + 1]
            if c == 0x22 or c == 0x5C or c == 0x2F:
                cp[0] = c
            elif c == 0x62:
                cp[0] = 0x08
            elif c == 0x66:
                cp[0] = 0x0C
            elif c == 0x6E:
                cp[0] = 0x0A
            elif c == 0x72:
                cp[0] = 0x0D
            elif c == 0x74:
                cp[0] = 0x09
            elif c == 0x75:
                if _hex4(p, i + 2, end, cp) < 0:
                    return -1
                if 0xDC00 <= cp[0] <= 0xDFFF:
                    return -1  # a lone low surrogate
                if 0xD800 <= cp[0] <= 0xDBFF:
                    # Only a pair is a character; Python would keep a lone half, which no host can take.
                    if i + 7 >= end or p[i + 6] != 0x5C or p[i + 7] != 0x75:
                        return -1
                    if _hex4(p, i + 8, end, &lo) < 0 or not (0xDC00 <= lo <= 0xDFFF):
                        return -1
                    cp[0] = 0x10000 + ((cp[0] - 0xD800) << 10) + (lo - 0xDC00)
                    return i + 12
                return i + 6
            else:
                return -1
            return i + 2
        if c < 0x20:
            return -1
        cp[0] = c
        return i + 1
    # UTF-8, as CPython's strict decoder takes it: no overlong forms, no surrogates, nothing past U+10FFFF.
    if 0xC2 <= c <= 0xDF:
        if i + 1 >= end or (p[i + 1] & 0xC0) != 0x80:
            return -1
        cp[0] = ((c & 0x1F) << 6) | (p[i + 1] & 0x3F)
        return i + 2
    if 0xE0 <= c <= 0xEF:
        if i + 2 >= end:
            return -1
        c1, c2 = p[i + 1], p[i + 2]
        if (c1 & 0xC0) != 0x80 or (c2 & 0xC0) != 0x80:
            return -1
        if (c == 0xE0 and c1 < 0xA0) or (c == 0xED and c1 > 0x9F):
            return -1
        cp[0] = ((c & 0x0F) << 12) | ((c1 & 0x3F) << 6) | (c2 & 0x3F)
        return i + 3
    if 0xF0 <= c <= 0xF4:
        if i + 3 >= end:
            return -1
        c1, c2, c3 = p[i + 1], p[i + 2], p[i + 3]
        if (c1 & 0xC0) != 0x80 or (c2 & 0xC0) != 0x80 or (c3 & 0xC0) != 0x80:
            return -1
        if (c == 0xF0 and c1 < 0x90) or (c == 0xF4 and c1 > 0x8F):
            return -1
        cp[0] = ((c & 0x07) << 18) | ((c1 & 0x3F) << 12) | ((c2 & 0x3F) << 6) | (c3 & 0x3F)
        return i + 4
    return -1


cdef Py_ssize_t _measure(const uint8_t* p, Py_ssize_t i, Py_ssize_t end, uint32_t* widest) noexcept nogil:
    """Characters in the literal p[i:end], or -1 where it is not valid; its widest character in `widest`."""
    cdef Py_ssize_t n = 0
    cdef uint32_t cp = 0, top = 0
    while i < end:
        if p[i] >= 0x20 and p[i] < 0x80 and p[i] != 0x5C:
            if p[i] > top:
                top = p[i]
            i += 1
        else:
            i = _next(p, i, end, &cp)
            if i < 0:
                return -1
            if cp > top:
                top = cp
        n += 1
    widest[0] = top
    return n


cdef object _fill(const uint8_t* p, Py_ssize_t i, Py_ssize_t end, Py_ssize_t n, uint32_t widest, object data):
    """The literal p[i:end] (measured valid) as a str; with `data`, its consumed pages given back on the way."""
    text = PyUnicode_New(n, widest)
    cdef int kind = PyUnicode_KIND(text)
    cdef void* out = PyUnicode_DATA(text)
    cdef Py_ssize_t k = 0, run, given = ((i + _PAGE - 1) // _PAGE) * _PAGE, upto
    cdef uint32_t cp = 0
    cdef const uint8_t* stop
    while i < end:
        if kind == 1 and widest < 0x80:
            # All ASCII: runs up to the next escape are copied as they are.
            upto = min(end, i + _RELEASE_STEP)
            stop = <const uint8_t*>memchr(p + i, 0x5C, upto - i)
            run = (stop - p if stop != NULL else upto) - i
            memcpy(<uint8_t*>out + k, p + i, run)
            k += run
            i += run
            if i < upto:
                i = _next(p, i, end, &cp)
                (<uint8_t*>out)[k] = <uint8_t>cp
                k += 1
        else:
            i = _next(p, i, end, &cp)
            if kind == 1:
                (<uint8_t*>out)[k] = <uint8_t>cp
            elif kind == 2:
                (<uint16_t*>out)[k] = <uint16_t>cp
            else:
                (<uint32_t*>out)[k] = cp
            k += 1
        if data is not None and i - given >= _RELEASE_STEP:
            upto = (i // _PAGE) * _PAGE
            data.madvise(_DONTNEED, given, upto - given)
            given = upto
    return text


def decode(data, spans, bint release=False):
    cdef Py_buffer buf
    cdef const uint8_t* p
    cdef Py_ssize_t start, end, n
    cdef uint32_t widest = 0
    cdef list sizes = []
    PyObject_GetBuffer(data, &buf, PyBUF_SIMPLE)
    try:
        p = <const uint8_t*>buf.buf
        for start, end in spans:
            if not (0 <= start <= end <= buf.len):
                raise ValueError(f"span ({start}, {end}) outside the data")
            n = _measure(p, start, end, &widest)
            if n < 0:
                return None
            sizes.append((n, widest))
        releaser = data if release and isinstance(data, mmap.mmap) and _DONTNEED is not None else None
        texts = []
        for (start, end), (n, widest) in zip(spans, sizes):
            texts.append(_fill(p, start, end, n, widest, releaser))
        return texts
    finally:
        PyBuffer_Release(&buf)


def has_long(value, Py_ssize_t threshold):
    cdef Py_ssize_t pos
    cdef PyObject* key
    cdef PyObject* item
    cdef list todo = [value]
    while todo:
        node = todo.pop()
        if isinstance(node, str):
            if len(<str>node) >= threshold:
                return True
        elif isinstance(node, dict):
            pos = 0
            while PyDict_Next(node, &pos, &key, &item):
                if isinstance(<object>item, str):  # the common leaf, tested without a trip through the list
                    if len(<str><object>item) >= threshold:
                        return True
                elif isinstance(<object>item, (dict, list)):
                    todo.append(<object>item)
        elif isinstance(node, list):
            todo.extend(<list>node)
    return False
