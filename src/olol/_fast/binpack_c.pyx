# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled twin of `_binpack_py` (same API and behaviour; see that module for the algorithm).

The two dynamic-programming passes run on C arrays without the GIL's object
traffic; pass 2's (hosts, time) pairs become two parallel arrays, with -1 hosts
marking "unreachable". The arithmetic is the twin's, in the same order, so
both pick the same plan to the last tie.
"""

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.math cimport INFINITY

from olol._fast._plan_types import Assignment, Host, Plan, PlanError, build_plan, infeasible, prepare

__all__ = ["Assignment", "Host", "Plan", "PlanError", "plan_layers"]


def plan_layers(n_layers, layer_bytes, output_bytes, kv_bytes_per_layer, hosts, margin=0.1):
    """Place `n_layers` blocks and the output layer on `hosts` (see `_binpack_py.plan_layers`)."""
    problem = prepare(n_layers, layer_bytes, output_bytes, kv_bytes_per_layer, hosts, margin)
    solved = _solve(problem.mem, problem.work, problem.caps, problem.speeds)
    if solved is None:
        raise infeasible(problem)
    counts, bottleneck = solved
    return build_plan(problem, counts, bottleneck)


cdef void* _alloc(Py_ssize_t size) except NULL:
    cdef void* p = PyMem_Malloc(size if size > 0 else 1)
    if p is NULL:
        raise MemoryError()
    return p


def _solve(mem, work, caps, speeds):
    """Items per host (in order) and the bottleneck, or None when memory cannot hold the items."""
    cdef Py_ssize_t n = len(mem)
    cdef Py_ssize_t n_hosts = len(caps)
    cdef Py_ssize_t i, j, h, k
    cdef long long* pm = <long long*>_alloc((n + 1) * sizeof(long long))
    cdef long long* pw = <long long*>_alloc((n + 1) * sizeof(long long))
    cdef long long* cap = <long long*>_alloc(n_hosts * sizeof(long long))
    cdef double* speed = <double*>_alloc(n_hosts * sizeof(double))
    cdef double* best = <double*>_alloc((n + 1) * sizeof(double))
    cdef double* nxt = <double*>_alloc((n + 1) * sizeof(double))
    cdef long* used = <long*>_alloc((n + 1) * sizeof(long))
    cdef double* spent = <double*>_alloc((n + 1) * sizeof(double))
    cdef long* nxt_used = <long*>_alloc((n + 1) * sizeof(long))
    cdef double* nxt_spent = <double*>_alloc((n + 1) * sizeof(double))
    cdef Py_ssize_t* parent = <Py_ssize_t*>_alloc(n_hosts * (n + 1) * sizeof(Py_ssize_t))
    cdef double value, stage, before, bottleneck, t
    cdef long chosen_used, u
    cdef double chosen_spent
    cdef long long c
    cdef double s
    try:
        pm[0] = 0
        pw[0] = 0
        for k in range(n):
            pm[k + 1] = pm[k] + <long long>mem[k]
            pw[k + 1] = pw[k] + <long long>work[k]
        for h in range(n_hosts):
            cap[h] = caps[h]
            speed[h] = speeds[h]

        with nogil:
            # Pass 1: best[j] = least bottleneck placing items [0, j) on the hosts so far.
            best[0] = 0.0
            for j in range(1, n + 1):
                best[j] = INFINITY
            for h in range(n_hosts):
                c = cap[h]
                s = speed[h]
                for j in range(n + 1):
                    value = best[j]  # the host takes nothing
                    i = j - 1
                    while i >= 0 and pm[j] - pm[i] <= c:
                        stage = <double>(pw[j] - pw[i]) / s
                        if stage >= value:
                            break  # stages only grow as the range grows
                        before = best[i]
                        if before < value:
                            value = before if before > stage else stage
                        i -= 1
                    nxt[j] = value
                for j in range(n + 1):
                    best[j] = nxt[j]
            bottleneck = best[n]

        if bottleneck == INFINITY:
            return None

        with nogil:
            # Pass 2: fewest hosts, then least total time, every stage within the bottleneck.
            used[0] = 0
            spent[0] = 0.0
            for j in range(1, n + 1):
                used[j] = -1
                spent[j] = 0.0
            for h in range(n_hosts):
                c = cap[h]
                s = speed[h]
                for j in range(n + 1):
                    chosen_used = used[j]
                    chosen_spent = spent[j]
                    parent[h * (n + 1) + j] = j
                    i = j - 1
                    while i >= 0 and pm[j] - pm[i] <= c:
                        stage = <double>(pw[j] - pw[i]) / s
                        if stage > bottleneck:
                            break
                        if used[i] >= 0:
                            u = used[i] + 1
                            t = spent[i] + stage
                            if chosen_used < 0 or u < chosen_used or (u == chosen_used and t < chosen_spent):
                                chosen_used = u
                                chosen_spent = t
                                parent[h * (n + 1) + j] = i
                        i -= 1
                    nxt_used[j] = chosen_used
                    nxt_spent[j] = chosen_spent
                for j in range(n + 1):
                    used[j] = nxt_used[j]
                    spent[j] = nxt_spent[j]

        counts = [0] * n_hosts
        j = n
        for h in range(n_hosts - 1, -1, -1):
            i = parent[h * (n + 1) + j]
            counts[h] = j - i
            j = i
        return counts, bottleneck
    finally:
        PyMem_Free(pm)
        PyMem_Free(pw)
        PyMem_Free(cap)
        PyMem_Free(speed)
        PyMem_Free(best)
        PyMem_Free(nxt)
        PyMem_Free(used)
        PyMem_Free(spent)
        PyMem_Free(nxt_used)
        PyMem_Free(nxt_spent)
        PyMem_Free(parent)
