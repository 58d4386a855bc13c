"""Which hosts hold which prompt prefixes: an approximate radix tree with per-host LRU budgets.

Pure-Python twin of `prefix_c.pyx` (same API, same behaviour); import the facade
`olol._fast.prefix` rather than this module.

A text (UTF-8 bytes) is cut into blocks of `BLOCK` bytes; block k is named by a
hash chained over blocks 1..k, so a name stands for a whole prefix and the set of
names is a radix tree whose edges are blocks. "Approximate": only whole blocks
count (a match is a multiple of `BLOCK`, up to `BLOCK - 1` bytes short), and two
prefixes could share a 61-bit name (odds about n^2 / 2^62).

Each host keeps the texts it was sent as LRU entries; a prefix node is held by a
host while any of its entries contains it. A host's `used` is the bytes of the
distinct nodes it holds, kept within its `budget` by evicting its least recently
sent texts, as its engine would evict KV cache. Evicting a text never leaves a
hole: any entry holding block k also holds blocks 1..k, so what a host holds is
always prefix-closed, and a match can walk all hosts at once down one path: one
table lookup per block, a bitmask of the hosts still matching.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["BLOCK", "MAX_HOSTS", "PrefixIndex", "block_hashes"]

BLOCK = 64  # bytes a block: about 16 tokens, the resolution of a match
MAX_HOSTS = 64  # one bit a host in the node table

_P = (1 << 61) - 1  # Mersenne prime modulus: reduction is a shift and an add in C
_R = 0x1F3D5B79A2C4E6F % _P  # chaining multiplier
_SEED = 0x5BD1E995


def block_hashes(text: bytes, limit: int = -1) -> list[int]:
    """Chained names of the first whole blocks of `text` (all of them, or at most `limit`)."""
    n = len(text) // BLOCK
    if limit >= 0:
        n = min(n, limit)
    out: list[int] = []
    h = _SEED
    view = memoryview(text)
    for k in range(n):
        v = int.from_bytes(view[k * BLOCK:(k + 1) * BLOCK], "little") % _P
        h = (h * _R + v) % _P
        out.append(h)
    return out


class _Host:
    __slots__ = ("bit", "budget", "entries", "refs", "used")

    def __init__(self, bit: int, budget: int) -> None:
        self.bit = bit
        self.budget = budget
        self.used = 0
        self.refs: dict[int, int] = {}
        self.entries: OrderedDict[int, list[int]] = OrderedDict()  # last block name -> names, LRU first


class PrefixIndex:
    """Per-host prefix caches of one model; hosts are named by strings, at most `MAX_HOSTS`."""

    def __init__(self) -> None:
        self._hosts: dict[str, _Host] = {}
        self._names: list[str | None] = [None] * MAX_HOSTS  # bit -> host name
        self._nodes: dict[int, int] = {}  # block name -> bitmask of hosts holding it

    # ------------------------------------------------------------------ hosts
    def set_host(self, host: str, budget: int) -> None:
        """Add `host` or change its budget (bytes); a smaller budget evicts at once."""
        entry = self._hosts.get(host)
        if entry is None:
            bit = next((i for i, name in enumerate(self._names) if name is None), -1)
            if bit < 0:
                raise ValueError(f"a prefix index holds at most {MAX_HOSTS} hosts")
            self._names[bit] = host
            entry = self._hosts[host] = _Host(bit, max(0, budget))
        entry.budget = max(0, budget)
        self._evict(entry)

    def remove_host(self, host: str) -> None:
        entry = self._hosts.pop(host, None)
        if entry is None:
            return
        while entry.entries:
            self._drop_oldest(entry)
        self._names[entry.bit] = None

    def hosts(self) -> list[str]:
        return list(self._hosts)

    def used(self, host: str) -> int:
        entry = self._hosts.get(host)
        return entry.used if entry is not None else 0

    def budget(self, host: str) -> int:
        entry = self._hosts.get(host)
        return entry.budget if entry is not None else 0

    def entries(self, host: str) -> int:
        entry = self._hosts.get(host)
        return len(entry.entries) if entry is not None else 0

    def nodes(self) -> int:
        return len(self._nodes)

    # ------------------------------------------------------------------ updates
    def insert(self, host: str, text: bytes) -> int:
        """Note that `host` was sent `text`; returns the bytes indexed (whole blocks, within budget)."""
        entry = self._hosts.get(host)
        if entry is None:
            raise KeyError(host)
        names = block_hashes(text, entry.budget // BLOCK)
        if not names:
            return 0
        key = names[-1]
        if key in entry.entries:
            entry.entries.move_to_end(key)
            return len(names) * BLOCK
        mask = 1 << entry.bit
        for name in names:
            count = entry.refs.get(name, 0)
            if count == 0:
                self._nodes[name] = self._nodes.get(name, 0) | mask
                entry.used += BLOCK
            entry.refs[name] = count + 1
        entry.entries[key] = names
        self._evict(entry)
        return len(names) * BLOCK

    def _evict(self, entry: _Host) -> None:
        while entry.used > entry.budget and entry.entries:
            self._drop_oldest(entry)

    def _drop_oldest(self, entry: _Host) -> None:
        _, names = entry.entries.popitem(last=False)
        clear = ~(1 << entry.bit)
        for name in names:
            count = entry.refs[name] - 1
            if count:
                entry.refs[name] = count
                continue
            del entry.refs[name]
            entry.used -= BLOCK
            mask = self._nodes[name] & clear
            if mask:
                self._nodes[name] = mask
            else:
                del self._nodes[name]

    # ------------------------------------------------------------------ queries
    def match(self, text: bytes) -> dict[str, int]:
        """Bytes of the longest cached prefix of `text` on each host that holds any of it."""
        out: dict[str, int] = {}
        live = 0
        for entry in self._hosts.values():
            live |= 1 << entry.bit
        n = len(text) // BLOCK
        h = _SEED
        view = memoryview(text)
        k = 0
        while live and k < n:
            v = int.from_bytes(view[k * BLOCK:(k + 1) * BLOCK], "little") % _P
            h = (h * _R + v) % _P
            held = self._nodes.get(h, 0) & live
            self._record(out, live & ~held, k)
            live = held
            k += 1
        self._record(out, live, k)
        return out

    def _record(self, out: dict[str, int], ended: int, blocks: int) -> None:
        if not blocks:
            return
        while ended:
            low = ended & -ended
            name = self._names[low.bit_length() - 1]
            if name is not None:
                out[name] = blocks * BLOCK
            ended ^= low
