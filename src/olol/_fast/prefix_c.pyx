# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# distutils: language = c++
"""Compiled twin of `_prefix_py` (same API and behaviour; see that module for the design).

The twin spends its time on Python big integers (one per 64-byte block) and dict
lookups; here a block's name is eight 64-bit multiply-adds modulo 2^61 - 1 in
128-bit arithmetic, and the node table and per-host reference counts are C++
hash maps, so matching a 32 KB prompt is a few microseconds of hashing plus one
lookup per matched block.
"""

from cython.operator cimport dereference as deref, predecrement as dec
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy
from libcpp.list cimport list as cpplist
from libcpp.unordered_map cimport unordered_map
from libcpp.vector cimport vector

__all__ = ["BLOCK", "MAX_HOSTS", "PrefixIndex", "block_hashes"]

cdef extern from *:
    ctypedef unsigned long long u128 "unsigned __int128"

BLOCK = 64
MAX_HOSTS = 64

cdef enum:
    _BLOCK = 64
    _WORDS = 8
cdef uint64_t _P = (1ULL << 61) - 1
cdef uint64_t _R = 0x1F3D5B79A2C4E6F % ((1ULL << 61) - 1)
cdef uint64_t _SEED = 0x5BD1E995


cdef inline uint64_t _fold(u128 x) noexcept nogil:
    # x mod 2^61-1 for x < 2^125: 2^61 = 1 (mod P), so the high part adds onto the low part.
    cdef u128 p = _P
    x = (x & p) + (x >> 61)
    x = (x & p) + (x >> 61)
    cdef uint64_t r = <uint64_t>x
    if r >= _P:
        r -= _P
    return r


cdef inline uint64_t _next(uint64_t h, const unsigned char* block) noexcept nogil:
    # The block as a little-endian 512-bit number, mod P: word i weighs 2^(64 i) = 8^i (mod P).
    cdef u128 acc = 0
    cdef uint64_t w
    cdef int i
    for i in range(_WORDS):
        memcpy(&w, block + 8 * i, 8)
        acc += (<u128>((w & _P) + (w >> 61))) << (3 * i)
    cdef uint64_t v = _fold(acc)
    return _fold(<u128>h * _R + v)


def block_hashes(const unsigned char[::1] text, long limit=-1):
    """Chained names of the first whole blocks of `text` (all of them, or at most `limit`)."""
    cdef Py_ssize_t n = text.shape[0] // _BLOCK
    if limit >= 0 and n > limit:
        n = limit
    cdef uint64_t h = _SEED
    cdef Py_ssize_t k
    out = []
    for k in range(n):
        h = _next(h, &text[0] + k * _BLOCK)
        out.append(h)
    return out


cdef struct Entry:
    uint64_t key
    vector[uint64_t] names


cdef class _Host:
    cdef public int bit
    cdef public long long budget
    cdef public long long used
    cdef unordered_map[uint64_t, uint32_t] refs
    cdef cpplist[Entry] lru  # least recently sent first
    cdef unordered_map[uint64_t, cpplist[Entry].iterator] where

    def __cinit__(self, int bit, long long budget):
        self.bit = bit
        self.budget = budget
        self.used = 0


cdef class PrefixIndex:
    """Per-host prefix caches of one model; hosts are named by strings, at most `MAX_HOSTS`."""

    cdef dict _hosts
    cdef list _names
    cdef unordered_map[uint64_t, uint64_t] _nodes
    cdef vector[uint64_t] _scratch

    def __init__(self):
        self._hosts = {}
        self._names = [None] * MAX_HOSTS

    # ------------------------------------------------------------------ hosts
    def set_host(self, str host, long long budget):
        cdef _Host entry = self._hosts.get(host)
        cdef int bit
        if budget < 0:
            budget = 0
        if entry is None:
            bit = -1
            for i, name in enumerate(self._names):
                if name is None:
                    bit = i
                    break
            if bit < 0:
                raise ValueError(f"a prefix index holds at most {MAX_HOSTS} hosts")
            self._names[bit] = host
            entry = _Host(bit, budget)
            self._hosts[host] = entry
        entry.budget = budget
        self._evict(entry)

    def remove_host(self, str host):
        cdef _Host entry = self._hosts.pop(host, None)
        if entry is None:
            return
        while not entry.lru.empty():
            self._drop_oldest(entry)
        self._names[entry.bit] = None

    def hosts(self):
        return list(self._hosts)

    def used(self, str host):
        cdef _Host entry = self._hosts.get(host)
        return entry.used if entry is not None else 0

    def budget(self, str host):
        cdef _Host entry = self._hosts.get(host)
        return entry.budget if entry is not None else 0

    def entries(self, str host):
        cdef _Host entry = self._hosts.get(host)
        return <Py_ssize_t>entry.lru.size() if entry is not None else 0

    def nodes(self):
        return <Py_ssize_t>self._nodes.size()

    # ------------------------------------------------------------------ updates
    def insert(self, str host, const unsigned char[::1] text):
        """Note that `host` was sent `text`; returns the bytes indexed (whole blocks, within budget)."""
        cdef _Host entry = self._hosts.get(host)
        if entry is None:
            raise KeyError(host)
        cdef Py_ssize_t n = text.shape[0] // _BLOCK
        cdef long long cap = entry.budget // _BLOCK
        if n > cap:
            n = cap
        if n <= 0:
            return 0
        cdef Entry item
        cdef uint64_t h = _SEED
        cdef Py_ssize_t k
        item.names.reserve(n)
        for k in range(n):
            h = _next(h, &text[0] + k * _BLOCK)
            item.names.push_back(h)
        item.key = h
        cdef unordered_map[uint64_t, cpplist[Entry].iterator].iterator found = entry.where.find(h)
        if found != entry.where.end():
            entry.lru.splice(entry.lru.end(), entry.lru, deref(found).second)
            return n * _BLOCK
        cdef uint64_t mask = 1ULL << entry.bit
        cdef uint32_t* count
        for k in range(n):
            count = &entry.refs[item.names[k]]
            if count[0] == 0:
                self._nodes[item.names[k]] |= mask
                entry.used += _BLOCK
            count[0] += 1
        entry.lru.push_back(item)
        cdef cpplist[Entry].iterator last = entry.lru.end()
        dec(last)
        entry.where[h] = last
        self._evict(entry)
        return n * _BLOCK

    cdef void _evict(self, _Host entry):
        while entry.used > entry.budget and not entry.lru.empty():
            self._drop_oldest(entry)

    cdef void _drop_oldest(self, _Host entry):
        cdef Entry* oldest = &entry.lru.front()
        cdef uint64_t clear = ~(1ULL << entry.bit)
        cdef size_t k
        cdef uint64_t name, mask
        cdef unordered_map[uint64_t, uint32_t].iterator ref
        cdef unordered_map[uint64_t, uint64_t].iterator node
        cdef uint32_t* count
        cdef uint64_t* held
        # Through pointers: Cython copies the pair when `deref(it).second` is assigned to.
        for k in range(oldest.names.size()):
            name = oldest.names[k]
            ref = entry.refs.find(name)
            count = &deref(ref).second
            count[0] -= 1
            if count[0]:
                continue
            entry.refs.erase(ref)
            entry.used -= _BLOCK
            node = self._nodes.find(name)
            held = &deref(node).second
            mask = held[0] & clear
            if mask:
                held[0] = mask
            else:
                self._nodes.erase(node)
        entry.where.erase(oldest.key)
        entry.lru.pop_front()

    # ------------------------------------------------------------------ queries
    def match(self, const unsigned char[::1] text):
        """Bytes of the longest cached prefix of `text` on each host that holds any of it."""
        out = {}
        cdef uint64_t live = 0, held
        cdef _Host entry
        for entry in self._hosts.values():
            live |= 1ULL << entry.bit
        cdef Py_ssize_t n = text.shape[0] // _BLOCK
        cdef Py_ssize_t k = 0
        cdef uint64_t h = _SEED
        cdef unordered_map[uint64_t, uint64_t].iterator node
        while live and k < n:
            h = _next(h, &text[0] + k * _BLOCK)
            node = self._nodes.find(h)
            held = deref(node).second & live if node != self._nodes.end() else 0
            if k and (live & ~held):
                self._record(out, live & ~held, k)
            live = held
            k += 1
        if k and live:
            self._record(out, live, k)
        return out

    cdef void _record(self, dict out, uint64_t ended, Py_ssize_t blocks):
        cdef uint64_t low
        cdef int bit
        while ended:
            low = ended & (~ended + 1)
            bit = 0
            while (low >> bit) != 1:
                bit += 1
            name = self._names[bit]
            if name is not None:
                out[name] = blocks * _BLOCK
            ended ^= low

