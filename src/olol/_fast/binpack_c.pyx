# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled twin of `_binpack_py` (same API and behaviour; see that module for the algorithm).

The dynamic programmes run on C arrays without the GIL's object traffic; the
balanced pass 2's (hosts, time) pairs become two parallel arrays, with -1
hosts marking "unreachable", and the latency search's (cost, hosts,
bottleneck) triples three, its costs int64 as in the twin. The arithmetic is
the twin's, in the same order, so both pick the same plan to the last tie.
"""

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.math cimport INFINITY

from olol._fast._plan_types import Assignment, Host, Plan, PlanError, prepare, solve

__all__ = ["Assignment", "Host", "Plan", "PlanError", "plan_layers"]


def plan_layers(n_layers, layer_bytes, output_bytes, kv_bytes_per_layer, hosts, margin=0.1, *,
                objective="latency", hop_cost=0.0, groups=None):
    """Place `n_layers` blocks and the output layer on `hosts` (see `_binpack_py.plan_layers`)."""
    problem = prepare(n_layers, layer_bytes, output_bytes, kv_bytes_per_layer, hosts, margin)
    return solve(problem, objective, hop_cost, groups, _solve, _solve_latency)


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


def _solve_latency(mem, work, caps, per_byte, hop, orders):
    """The best candidate's index and its items per host (in its order), or None when none fits."""
    cdef Py_ssize_t n = len(mem)
    cdef Py_ssize_t n_hosts = len(caps)
    cdef Py_ssize_t i, j, k, index, first_tail
    cdef long long* pm = <long long*>_alloc((n + 1) * sizeof(long long))
    cdef long long* pw = <long long*>_alloc((n + 1) * sizeof(long long))
    cdef long long* cap = <long long*>_alloc(n_hosts * sizeof(long long))
    cdef long long* cost = <long long*>_alloc(n_hosts * sizeof(long long))
    cdef Py_ssize_t* order = <Py_ssize_t*>_alloc(n_hosts * sizeof(Py_ssize_t))
    cdef long long* spent = <long long*>_alloc((n + 1) * sizeof(long long))
    cdef long* hosts = <long*>_alloc((n + 1) * sizeof(long))
    cdef long long* peak = <long long*>_alloc((n + 1) * sizeof(long long))
    cdef Py_ssize_t* parent = <Py_ssize_t*>_alloc(n_hosts * (n + 1) * sizeof(Py_ssize_t))
    cdef long long c, hop_c = hop, s_j, m_j, stage, total, m
    cdef long u_j, u
    cdef long long best_spent = 0, best_peak = 0, bound
    cdef long best_hosts = -1, best_rank = 0, rank
    cdef bint better
    best = None
    try:
        pm[0] = 0
        pw[0] = 0
        for k in range(n):
            pm[k + 1] = pm[k] + <long long>mem[k]
            pw[k + 1] = pw[k] + <long long>work[k]
        for k in range(n_hosts):
            cap[k] = caps[k]
            cost[k] = per_byte[k]

        for index in range(len(orders)):
            rank_obj, order_obj, tail_obj, bound_obj = orders[index]
            rank = rank_obj
            bound = bound_obj
            if best_hosts >= 0 and bound > best_spent:
                break  # orders come best bound first: none left can beat the best plan
            for k in range(n_hosts):
                order[k] = order_obj[k]
            first_tail = n_hosts - <Py_ssize_t>tail_obj
            with nogil:
                spent[0] = 0
                hosts[0] = 0
                peak[0] = 0
                for j in range(1, n + 1):
                    spent[j] = 0
                    hosts[j] = -1
                    peak[j] = 0
                for k in range(n_hosts):
                    if k == first_tail:
                        hosts[n] = -1  # the group moved last holds the output (the given order covers it unused)
                    c = cost[order[k]]
                    for j in range(n + 1):
                        parent[k * (n + 1) + j] = j
                    # j descending: the scan reads only smaller prefixes, still the previous host's.
                    j = n
                    while j > 0:
                        s_j = spent[j]
                        u_j = hosts[j]
                        m_j = peak[j]
                        i = j - 1
                        while i >= 0 and pm[j] - pm[i] <= cap[order[k]]:
                            if hosts[i] >= 0:
                                stage = (pw[j] - pw[i]) * c
                                total = spent[i] + stage + hop_c
                                u = hosts[i] + 1
                                m = peak[i] if peak[i] > stage else stage
                                if u_j < 0 or total < s_j or (total == s_j and (u < u_j or (u == u_j and m < m_j))):
                                    s_j = total
                                    u_j = u
                                    m_j = m
                                    parent[k * (n + 1) + j] = i
                            i -= 1
                        spent[j] = s_j
                        hosts[j] = u_j
                        peak[j] = m_j
                        j -= 1
            if hosts[n] < 0:
                continue
            if best_hosts < 0:
                better = True
            elif spent[n] != best_spent:
                better = spent[n] < best_spent
            elif hosts[n] != best_hosts:
                better = hosts[n] < best_hosts
            elif peak[n] != best_peak:
                better = peak[n] < best_peak
            else:
                better = rank < best_rank
            if better:
                best_spent = spent[n]
                best_hosts = hosts[n]
                best_peak = peak[n]
                best_rank = rank
                counts = [0] * n_hosts
                j = n
                for k in range(n_hosts - 1, -1, -1):
                    i = parent[k * (n + 1) + j]
                    counts[k] = j - i
                    j = i
                best = (index, counts)
        return best
    finally:
        PyMem_Free(pm)
        PyMem_Free(pw)
        PyMem_Free(cap)
        PyMem_Free(cost)
        PyMem_Free(order)
        PyMem_Free(spent)
        PyMem_Free(hosts)
        PyMem_Free(peak)
        PyMem_Free(parent)
