"""What an open dashboard costs the proxy: CPU with 5 pages on an idle cluster, and the size of one update.

    python -m bench.bench_dashboard [--window 15] [--rounds 3]

CPU: 3 simulated hosts and `olol proxy` (through its CLI, probing every host
each second as deployed), each in its own process; the proxy's CPU time is read
from /proc over alternating windows with no page open and with 5 pages reading
`/ui/events` (what a browser tab does after loading the page once). The bound
is 2% of one core with the 5 pages.

Size: one update (the server-sent event, as sent) for a made-up cluster of 50
hosts and 200 models, each model on 3 hosts (tests/support/dashboard_cluster.py);
the bound is 50 KB. Also the time to build and encode it, once per tick.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time

import aiohttp
import psutil

from bench._report import median, table, write_section
from bench.bench_proxy_harness import Cluster, machine
from olol.proxy.ui.feed import DashboardFeed
from olol.proxy.ui.snapshot import build_snapshot
from tests.support.dashboard_cluster import large_context

PAGES = 5
CPU_BOUND = 2.0  # % of one core
SIZE_BOUND = 50_000  # bytes


async def _page(url: str, ready: asyncio.Event, counts: list[int]) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/ui/events") as resp:
        async for line in resp.content:
            if line.startswith(b"data: "):
                counts.append(len(line))
                ready.set()


async def _cpu_percent(proc: psutil.Process, window: float) -> float:
    before = sum(proc.cpu_times()[:2])
    start = time.monotonic()
    await asyncio.sleep(window)
    used = sum(proc.cpu_times()[:2]) - before
    return 100.0 * used / (time.monotonic() - start)


async def measure_cpu(window: float, rounds: int) -> tuple[list[float], list[float], int]:
    idle: list[float] = []
    pages: list[float] = []
    updates = 0
    async with Cluster() as cluster:
        sims = [await cluster.sim(f"sim{i}") for i in range(3)]
        proxy = await cluster.proxy([s.url for s in sims])
        proc = psutil.Process(proxy.proc.pid)
        await asyncio.sleep(2)  # past the start-up work (first probes, imports)
        for _ in range(rounds):
            idle.append(await _cpu_percent(proc, window))
            counts: list[int] = []
            readies = [asyncio.Event() for _ in range(PAGES)]
            tasks = [asyncio.create_task(_page(proxy.url, r, counts)) for r in readies]
            await asyncio.gather(*(r.wait() for r in readies))
            pages.append(await _cpu_percent(proc, window))
            updates += len(counts)
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await asyncio.sleep(1.5)  # the feed notices nobody listens and stops ticking
    return idle, pages, updates


def measure_size() -> tuple[int, float]:
    ctx = large_context(50, 200)
    feed = DashboardFeed(lambda: build_snapshot(ctx))
    size = len(feed.encode())
    times = []
    for _ in range(30):
        start = time.perf_counter()
        feed.encode()
        times.append(time.perf_counter() - start)
    return size, median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=15.0, help="seconds per CPU window")
    parser.add_argument("--rounds", type=int, default=3, help="idle/5-page window pairs")
    args = parser.parse_args()
    where = machine()
    size, build_ms = measure_size()
    idle, pages, updates = asyncio.run(measure_cpu(args.window, args.rounds))
    rows = [
        ["proxy CPU, idle cluster, no page open", f"{median(idle):.2f}% of a core", "",
         ", ".join(f"{x:.2f}" for x in idle)],
        [f"proxy CPU, idle cluster, {PAGES} pages open", f"{median(pages):.2f}% of a core", f"<= {CPU_BOUND:g}%",
         ", ".join(f"{x:.2f}" for x in pages)],
        ["one update, 50 hosts / 200 models", f"{size / 1000:.1f} KB", f"<= {SIZE_BOUND / 1000:g} KB", ""],
        ["building + encoding it (once per tick)", f"{build_ms:.2f} ms", "", "median of 30"],
    ]
    ok = median(pages) <= CPU_BOUND and size <= SIZE_BOUND
    write_section("dashboard", f"""## Dashboard: what open pages cost the proxy

`python -m bench.bench_dashboard --window {args.window:g} --rounds {args.rounds}` — {where}

3 simulated hosts and `olol proxy` in their own processes (the proxy probes each host every
second, as deployed); CPU read from /proc over {args.rounds} alternating windows of {args.window:g} s
without and with {PAGES} pages reading `/ui/events` ({updates} updates received). The update is
built and encoded once per tick (1 s) whatever the number of pages.

{table(["what", "median", "bound", "runs"], rows)}

{"Both bounds hold." if ok else "A bound is NOT met."}
""")
    for row in rows:
        print(" | ".join(row))


if __name__ == "__main__":
    main()
