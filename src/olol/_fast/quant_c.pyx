# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled twin of `_quant_py` (same API and behaviour; see that module for the rules).

Where the time goes in the twin is name parsing, which `best_match` repeats for
every model on the cluster. Here names that are already clean (ASCII, lower
case, unpadded: nearly all of them) skip `strip().lower()`, one backwards scan
replaces two `rfind`s, `parse_level` and `best_match` never build a base name
they do not need, and the tables are C-typed dicts instead of module globals.
"""

from olol._fast.names import DEFAULT_PREFIXES as _DEFAULT_PREFIXES, normalize
from olol._fast._quant_table import (
    CANDIDATE_POSITION as _CANDIDATE_POSITION,
    CANDIDATES as _CANDIDATES,
    LEVELS,
    MAX_LEVEL_LENGTH as _MAX_LEVEL_LENGTH,
    RANK as _RANK,
    SEPARATORS as _SEPARATORS,
    TOKENS as _TOKENS,
    UNSPECIFIED_POSITION as _UNSPECIFIED_POSITION,
)

__all__ = [
    "LEVELS",
    "base_name",
    "best_match",
    "candidates",
    "compatible",
    "normalize_level",
    "parse_level",
    "rank",
    "split_name",
]

# Plain dicts so Cython can use the C dict API on them.
cdef dict TOKENS = dict(_TOKENS)
cdef dict RANK = dict(_RANK)
cdef dict CANDIDATES = {k: tuple(v) for k, v in _CANDIDATES.items()}
cdef dict CANDIDATE_POSITION = {k: dict(v) for k, v in _CANDIDATE_POSITION.items()}
cdef dict UNSPECIFIED_POSITION = dict(_UNSPECIFIED_POSITION)
cdef Py_ssize_t MAX_LEN = _MAX_LEVEL_LENGTH
cdef Py_ssize_t N_LEVELS = len(LEVELS)
assert _SEPARATORS == "-._", "update _is_separator"


cdef inline bint _is_separator(Py_UCS4 c):
    return c == u"-" or c == u"." or c == u"_"


cdef inline bint _is_space(Py_UCS4 c):
    # What str.strip() removes from ASCII text: \t \n \v \f \r, \x1c-\x1f and space.
    return c == u" " or u"\t" <= c <= u"\r" or u"\x1c" <= c <= u"\x1f"


cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object o)
    const unsigned char* PyUnicode_1BYTE_DATA(object o)


cdef tuple PREFIXES = tuple(_DEFAULT_PREFIXES)


cdef str _clean(str name):
    """`name.strip().lower()` without `.gguf` and the default registry, skipping both calls for names
    already clean."""
    cdef Py_ssize_t n = len(name)
    cdef Py_ssize_t i
    cdef const unsigned char* data
    cdef bint clean = PyUnicode_IS_ASCII(name)
    if clean and n:
        data = PyUnicode_1BYTE_DATA(name)
        clean = not (_is_space(data[0]) or _is_space(data[n - 1]))
        for i in range(n):
            if b"A"[0] <= data[i] <= b"Z"[0]:
                clean = False
                break
    cdef str s = name if clean else name.strip().lower()
    if s.endswith(".gguf"):
        s = s[:len(s) - 5]
    cdef str prefix
    for prefix in PREFIXES:
        if s.startswith(prefix):
            return s[len(prefix):]
    return s


cdef struct Parsed:
    Py_ssize_t colon  # index of the tag's ":" (or -1)
    Py_ssize_t start  # where the tag, or the last path component, begins
    Py_ssize_t cut  # where the level's separator (or the level itself) begins
    bint tagged


cdef object _find_level(str s, Parsed* p):
    """Locate the tag and the quant level of a cleaned name; the level or None."""
    cdef Py_ssize_t n = len(s)
    cdef Py_ssize_t i, q
    cdef Py_ssize_t colon = -1
    cdef Py_ssize_t slash = -1
    cdef Py_UCS4 c
    # One pass from the end finds the last ":" and "/" (what two rfind calls would).
    for i in range(n - 1, -1, -1):
        c = s[i]
        if c == u"/":
            slash = i
            break
        if c == u":" and colon < 0:
            colon = i
    p.tagged = colon > slash
    p.colon = colon if p.tagged else -1
    p.start = colon + 1 if p.tagged else slash + 1
    p.cut = n
    level = None
    if n - p.start <= MAX_LEN:
        level = TOKENS.get(s[p.start:])
        p.cut = p.start
    if level is None:
        for q in range(max(p.start, n - MAX_LEN - 1), n - 1):
            if _is_separator(s[q]):
                level = TOKENS.get(s[q + 1:])
                if level is not None:
                    p.cut = q
                    break
    if level is not None and not p.tagged and p.cut == p.start:
        return None  # the name *is* a level token: a model called that
    return level


cdef str _base(str s, Parsed* p, object level):
    if level is None:
        return s if p.tagged else s + ":latest"
    if p.tagged:
        return s[:p.colon] + ":" + (s[p.start:p.cut] or "latest")
    return s[:p.cut] + ":latest"


cpdef tuple split_name(str name):
    """(base name with tag, canonical level or None): `llama3:8b-q4_0` -> (`llama3:8b`, `q4_0`)."""
    cdef str s = _clean(name)
    cdef Parsed p
    level = _find_level(s, &p)
    return _base(s, &p, level), level


def parse_level(str name):
    """The canonical quant level a model name carries, or None."""
    cdef Parsed p
    return _find_level(_clean(name), &p)


def base_name(str name):
    """The normalized name without its quant level."""
    return split_name(name)[0]


def normalize_level(str level):
    """`Q4_K_M` -> `q4_k_m`, `fp16` -> `f16`; None for an unknown level."""
    return TOKENS.get(level.strip().lower())


def rank(str level):
    """Quality rank (higher is better, see `LEVELS`); -1 for an unknown level."""
    canonical = TOKENS.get(level.strip().lower())
    return -1 if canonical is None else RANK[canonical]


cdef inline object _token(str level):
    # Canonical spellings hit the dict directly; others are normalized first.
    found = TOKENS.get(level)
    if found is None:
        found = TOKENS.get(level.strip().lower())
    return found


def compatible(str requested, str available):
    """Whether a model at level `available` may serve a request for level `requested`."""
    req_level = _token(requested)
    avail_level = _token(available)
    if req_level is None or avail_level is None:
        return requested.strip().lower() == available.strip().lower()
    return avail_level in <dict>CANDIDATE_POSITION[req_level]


def candidates(str requested):
    """Levels that may serve `requested`, preferred first: exact, then closest higher quality."""
    cdef str req = requested.strip().lower()
    level = TOKENS.get(req)
    return [req] if level is None else list(<tuple>CANDIDATES[level])


def best_match(str requested_model, available_models):
    """The available model that best serves `requested_model`, or None (see `_quant_py`)."""
    cdef str s = _clean(requested_model)
    cdef str wanted = normalize(s)
    cdef Parsed p
    level = _find_level(s, &p)
    cdef str base = _base(s, &p, level)
    cdef dict preference = UNSPECIFIED_POSITION if level is None else CANDIDATE_POSITION[level]
    cdef object best = None
    cdef Py_ssize_t best_position = N_LEVELS
    cdef str other
    for name in available_models:
        other = _clean(name)
        other_level = _find_level(other, &p)
        if normalize(other) == wanted:  # the one normaliser (cached): an exact name wins
            return name
        if other_level is None:
            continue
        found = preference.get(other_level)
        if found is not None and <Py_ssize_t>found < best_position and _base(other, &p, other_level) == base:
            best = name
            best_position = found
    return best
