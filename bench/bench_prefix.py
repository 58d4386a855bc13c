"""The prefix index's match, compiled against its pure-Python twin, at cluster scale.

    python -m bench.bench_prefix        # build first: python setup.py build_ext --inplace

16 hosts, each holding 10,000 cached prompts (shared 1-4 KB system prompts with
their own tails, as an index fills under real traffic), and a 32 KB prompt whose
longest cached prefix is 30 KB on one host and 8 KB on the others: the walk goes
480 blocks deep before it ends. Target: <= 0.2 ms a match, compiled. The twin is
timed on the same shape with 1,000 prompts a host (its Python integers would need
gigabytes at 10,000); its match time does not depend on the number of prompts held.
Figures go into the `prefix-index` section of BENCHMARKS.md.
"""

from __future__ import annotations

import os
import random
import time
from types import ModuleType

from bench._report import median, table, write_section
from olol._fast import compiled, pure

HOSTS = 16
PROMPTS = 10_000
TWIN_PROMPTS = 1_000
QUERY_BYTES = 32 * 1024


def _text(rnd: random.Random, n: int) -> bytes:
    return bytes(rnd.randrange(32, 127) for _ in range(n))


def build(module: ModuleType, prompts: int, seed: int = 7) -> tuple[object, bytes, float]:
    rnd = random.Random(seed)
    systems = [_text(rnd, rnd.randrange(1024, 4096)) for _ in range(200)]
    query = _text(rnd, QUERY_BYTES)
    tails = [_text(rnd, 512) for _ in range(1000)]
    index = module.PrefixIndex()
    spent = 0.0
    for h in range(HOSTS):
        host = f"host-{h:02d}"
        index.set_host(host, 1 << 34)
        index.insert(host, query[: (30 if h == 0 else 8) * 1024])
        for i in range(prompts):
            text = rnd.choice(systems) + f"{h}:{i}:".encode() + rnd.choice(tails)[: rnd.randrange(64, 512)]
            start = time.perf_counter()
            index.insert(host, text)
            spent += time.perf_counter() - start
    return index, query, spent / (HOSTS * prompts)


def time_match(index: object, query: bytes, repeats: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds a match: CPU time is what the match costs on a box others share."""
    match = index.match  # type: ignore[attr-defined]
    result = match(query)
    assert result["host-00"] == 30 * 1024 and result["host-01"] == 8 * 1024, result
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(100):
            match(query)
        wall.append((time.perf_counter() - start) / 100)
        cpu.append((time.process_time() - start_cpu) / 100)
    return median(wall), median(cpu)


def main() -> None:
    rows = []
    fast = compiled("prefix")
    load = os.getloadavg()[0]
    if fast is not None:
        index, query, insert = build(fast, PROMPTS)
        wall, cpu = time_match(index, query, 15)
        rows.append(("compiled (prefix_c)", f"{PROMPTS:,}", f"{wall * 1e3:.4f}", f"{cpu * 1e3:.4f}",
                     f"{insert * 1e6:.1f}", f"{index.nodes():,}"))  # type: ignore[attr-defined]
        del index
    index, query, insert = build(pure("prefix"), TWIN_PROMPTS)
    wall, cpu = time_match(index, query, 5)
    rows.append(("pure Python (_prefix_py)", f"{TWIN_PROMPTS:,}", f"{wall * 1e3:.4f}", f"{cpu * 1e3:.4f}",
                 f"{insert * 1e6:.1f}", f"{index.nodes():,}"))  # type: ignore[attr-defined]
    markdown = (
        "## Prefix index (`olol._fast.prefix`)\n\n"
        f"`python -m bench.bench_prefix`: {HOSTS} hosts, a {QUERY_BYTES // 1024} KB prompt whose longest cached "
        "prefix is 30 KB on one host and 8 KB on the rest (a 480-block walk), median of 100-match batches; "
        f"load average {load:.2f} on 2 shared cores. Target: <= 0.2 ms a match, compiled.\n\n"
        + table(["implementation", "prompts a host", "match, wall (ms)", "match, CPU (ms)", "insert (us)",
                 "nodes"], rows)
    )
    print(markdown)
    write_section("prefix-index", markdown)


if __name__ == "__main__":
    main()
