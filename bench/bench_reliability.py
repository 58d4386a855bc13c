"""Reliability under hostile input: poison requests, huge bodies, fuzzed bodies (issue 20).

Everything runs on loopback: Ollama simulators (behind OLOL agents where the
wire conversion matters), and `olol proxy` in its own process so its memory is
its own. Three parts, each its own section of BENCHMARKS.md:

- poison: 10 client loops sending requests that once marked hosts down
  (`"context": [null]`, `keep_alive: 1e300`, a `format` nested 50 deep, ...)
  while normal chat requests are timed; counts hosts marked down.
- bodies: 8 chat requests of 63 MiB at once; the proxy's peak RSS, and what it
  keeps after.
- fuzz: hypothesis-generated /api/chat and /api/generate bodies through
  agents; counts 5xx answers.

    python -m bench.bench_reliability --report
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

import aiohttp

from bench._report import table, write_section
from bench.bench_soak import TOKEN, SimHost, _free_port, _spawn
from tests.support.poison import MODEL, POISON, USER, nested

MiB = 1 << 20


def _rss(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) in MiB, from /proc (VmHWM is the kernel's high-water mark)."""
    with open(f"/proc/{pid}/status") as status:
        fields = dict(line.split(":", 1) for line in status.read().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


async def _proxy(servers: list[str], *extra: str) -> tuple[asyncio.subprocess.Process, str]:
    port = _free_port()
    proc, _ = await _spawn(
        sys.executable, "-m", "olol", "proxy", "--host", "127.0.0.1", "--port", str(port),
        "--servers", ",".join(servers), "--token", TOKEN, "--log-level", "error",
        "--state-dir", tempfile.mkdtemp(prefix="olol-rel-"), *extra,
    )  # fmt: skip
    return proc, f"http://127.0.0.1:{port}"


async def _stop(*procs: asyncio.subprocess.Process | None) -> None:
    for proc in procs:
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _down_hosts(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url + "/api/status") as r:
        status = await r.json()
    return sum(1 for h in status.get("hosts", []) if not h.get("healthy", True))


# ---------------------------------------------------------------------- poison
async def _normal_latencies(
    http: aiohttp.ClientSession, url: str, seconds: float, failed: list[int] | None = None
) -> list[float]:
    """Latencies of the normal requests that succeeded; the statuses of the others go to `failed`."""
    out: list[float] = []
    stop = time.monotonic() + seconds

    async def one_client() -> None:
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            body = {"model": MODEL, "messages": [USER], "stream": False, "options": {"num_predict": 8}}
            async with http.post(url + "/api/chat", json=body) as r:
                await r.read()
                if r.status == 200:
                    out.append(time.perf_counter() - t0)
                elif failed is not None:
                    failed.append(r.status)

    await asyncio.gather(*(one_client() for _ in range(4)))
    return out


async def _poison_loop(
    http: aiohttp.ClientSession, url: str, stop: asyncio.Event, tally: dict[int, int], rate: float
) -> None:
    """One client sending poison: `rate` requests/s, or back to back (as fast as the proxy answers) at 0."""
    i = 0
    while not stop.is_set():
        if rate:
            await asyncio.sleep(1.0 / rate)
        path, body = POISON[i % len(POISON)]
        i += 1
        async with http.post(url + path, data=json.dumps(body)) as r:
            await r.read()
            tally[r.status] = tally.get(r.status, 0) + 1


async def _poison_for(url: str, seconds: float, rate: float) -> dict[int, int]:
    stop, tally = asyncio.Event(), dict[int, int]()
    async with aiohttp.ClientSession() as http:
        loops = [asyncio.ensure_future(_poison_loop(http, url, stop, tally, rate)) for _ in range(10)]
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(*loops)
    return tally


def _poison_process(url: str, seconds: float, rate: float, cpus: set[int] | None, out: Any) -> None:
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    started, t0 = os.times(), time.monotonic()
    tally = asyncio.run(_poison_for(url, seconds, rate))
    ended = os.times()
    out.put((tally, (ended.user + ended.system - started.user - started.system) / (time.monotonic() - t0)))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a whole process (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pin(pid: int, cpus: set[int]) -> None:
    """Every thread of a process onto `cpus` (sched_setaffinity on a pid moves only its main thread)."""
    for task in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(task), cpus)


async def poison(args: argparse.Namespace) -> dict[str, Any]:
    import multiprocessing

    hosts = [SimHost("agents", args.token_rate, 4) for _ in range(3)]
    proxy = None
    try:
        await asyncio.gather(*(h.start() for h in hosts))
        proxy, url = await _proxy([h.spec for h in hosts], "--no-affinity")
        # Pinned (`--pin`): the proxy alone on CPU 0 and the poison loops on CPU 1 in both phases, so the
        # loops' own client (a core's worth of work back to back) does not take the proxy's CPU.
        pin = args.pin and len(os.sched_getaffinity(0)) >= 2
        if pin:
            _pin(proxy.pid, {0})
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
            await _normal_latencies(http, url, 2.0)  # warm-up
            # Alternating phases, so a change in the shared box's load hits both alike.
            rounds: list[tuple[list[float], list[float]]] = []
            tally: dict[int, int] = {}
            failed: list[int] = []
            proxy_cpu: list[tuple[float, float]] = []  # share of a core, alone and under poison
            loops_cpu: list[float] = []
            for _ in range(args.rounds):
                c0, t0 = _cpu_seconds(proxy.pid), time.monotonic()
                calm = await _normal_latencies(http, url, args.seconds)
                calm_cpu = (_cpu_seconds(proxy.pid) - c0) / (time.monotonic() - t0)
                # The poison loops run in a process of their own: in this one they would slow the timing clients.
                context = multiprocessing.get_context("spawn")
                results = context.Queue()
                loops = context.Process(
                    target=_poison_process,
                    args=(url, args.seconds + 1.0, args.poison_rate, {1} if pin else None, results),
                )
                loops.start()
                await asyncio.sleep(1.0)  # the loops are running
                c0, t0 = _cpu_seconds(proxy.pid), time.monotonic()
                under = await _normal_latencies(http, url, args.seconds, failed)
                proxy_cpu.append((calm_cpu, (_cpu_seconds(proxy.pid) - c0) / (time.monotonic() - t0)))
                statuses, client_cpu = await asyncio.to_thread(results.get, True, 60)
                loops_cpu.append(client_cpu)
                for status, count in statuses.items():
                    tally[status] = tally.get(status, 0) + count
                await asyncio.to_thread(loops.join, 30)
                rounds.append((calm, under))
            down = await _down_hosts(http, url)
        return {"rounds": rounds, "tally": tally, "down": down, "failed": failed, "pin": pin,
                "proxy_cpu": proxy_cpu, "loops_cpu": loops_cpu}  # fmt: skip
    finally:
        await _stop(proxy)
        for h in hosts:
            await _stop(h.agent, h.sim)


# ---------------------------------------------------------------------- bodies
def _big_body(size: int) -> bytes:
    head = {"model": MODEL, "messages": [{"role": "user", "content": "__TEXT__"}], "stream": False,
            "options": {"num_predict": 4}}  # fmt: skip
    frame = json.dumps(head).encode()
    text = base64.b64encode(os.urandom((size - len(frame)) * 3 // 4))  # JSON-safe text that does not compress
    return frame.replace(b"__TEXT__", text)


async def bodies(args: argparse.Namespace) -> dict[str, Any]:
    host = SimHost("ollama", 1000.0, 8)
    proxy = None
    try:
        await host.start()
        proxy, url = await _proxy([host.spec])
        body = _big_body(63 * MiB)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as http:
            for _ in range(3):  # warm-up with small requests
                small = {"model": MODEL, "messages": [USER], "stream": False}
                async with http.post(url + "/api/chat", json=small) as r:
                    await r.read()
            idle, _ = _rss(proxy.pid)

            async def one() -> int:
                async with http.post(url + "/api/chat", data=body, headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                    return r.status

            t0 = time.perf_counter()
            statuses = await asyncio.gather(*(one() for _ in range(8)))
            took = time.perf_counter() - t0
            await asyncio.sleep(2.0)
            after, peak = _rss(proxy.pid)
        return {"idle": idle, "peak": peak, "after": after, "statuses": statuses, "took": took,
                "size": len(body) / MiB}  # fmt: skip
    finally:
        await _stop(proxy, host.agent, host.sim)


# ---------------------------------------------------------------------- fuzz
def _fuzz_sync(url: str, examples: int) -> dict[int, int]:
    import urllib.error
    import urllib.request

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    anything = st.recursive(
        scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=40
    )
    # Values that are almost right get past a type check more often: lists with nulls or objects among the
    # items, durations past int64 nanoseconds, objects nested deeper than the wire carries.
    almost = st.one_of(
        st.lists(st.none() | st.integers() | st.text(max_size=5) | st.dictionaries(st.text(max_size=4), scalars),
                 max_size=3),
        st.floats(min_value=1e9, max_value=1e308) | st.sampled_from(["1e300s", "99999999999h", "-1", "5m"]),
        st.integers(min_value=20, max_value=600).map(nested),
    )  # fmt: skip
    values = anything | almost
    fields = st.sampled_from([
        "context", "images", "keep_alive", "format", "options", "think", "tools", "raw", "system", "template",
        "prompt", "suffix", "messages", "stream", "truncate", "logprobs", "top_logprobs",
    ])  # fmt: skip
    message = st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system"]) | values, "content": st.text() | values},
        optional={"images": values, "tool_calls": values | st.just([{"function": "f"}]), "thinking": values},
    )
    bodies = st.fixed_dictionaries(
        {"model": st.just(MODEL) | values, "messages": st.lists(message | values, max_size=3)},
        optional={"stream": st.just(False)},
    ).flatmap(
        lambda base: st.dictionaries(fields, values, max_size=4).map(lambda extra: {**base, **extra, "stream": False})
    )
    paths = st.sampled_from(["/api/chat", "/api/generate"])
    tally: dict[int, int] = {}

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(path=paths, body=bodies)
    def send(path: str, body: dict[str, Any]) -> None:
        data = json.dumps(body, allow_nan=True).encode()
        request = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as r:
                r.read()
                status = r.status
        except urllib.error.HTTPError as exc:
            exc.read()
            status = exc.code
        tally[status] = tally.get(status, 0) + 1

    send()
    return tally


async def fuzz(args: argparse.Namespace) -> dict[str, Any]:
    hosts = [SimHost("agents", 1000.0, 4) for _ in range(2)]
    proxy = None
    try:
        await asyncio.gather(*(h.start() for h in hosts))
        proxy, url = await _proxy([h.spec for h in hosts])
        tally = await asyncio.to_thread(_fuzz_sync, url, args.examples)
        async with aiohttp.ClientSession() as http:
            down = await _down_hosts(http, url)
        return {"tally": tally, "down": down}
    finally:
        await _stop(proxy)
        for h in hosts:
            await _stop(h.agent, h.sim)


# ---------------------------------------------------------------------- report
def _ms(values: list[float], q: float) -> str:
    if not values:
        return "-"
    return f"{statistics.quantiles(values, n=100)[int(q) - 1] * 1000:.0f} ms" if q != 50 else (
        f"{statistics.median(values) * 1000:.0f} ms")


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min) / {five:.1f} (5 min) at the end"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="poison,bodies,fuzz")
    parser.add_argument("--seconds", type=float, default=15.0, help="timing window of each poison phase")
    parser.add_argument("--rounds", type=int, default=3, help="alternating calm/poison rounds")
    parser.add_argument("--poison-rate", type=float, default=0.0, help="requests/s per poison loop; 0: back to back")
    parser.add_argument("--token-rate", type=float, default=20.0, help="tokens/s of the poison part's hosts")
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True,
                        help="poison part: the proxy on CPU 0, the poison loops on CPU 1 (both phases)")
    parser.add_argument("--examples", type=int, default=300, help="hypothesis examples of the fuzz part")
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    command = "python -m bench.bench_reliability " + " ".join(sys.argv[1:])
    parts = args.parts.split(",")
    if "poison" in parts:
        r = await poison(args)
        calm_p50 = statistics.median(statistics.median(c) for c, _ in r["rounds"])
        under_p50 = statistics.median(statistics.median(u) for _, u in r["rounds"])
        change = (under_p50 / calm_p50 - 1) * 100
        md = (
            "## Reliability: poison requests\n\n"
            f"`{command}` on {os.cpu_count()} CPUs ({_load()}): 3 agents over Ollama simulators "
            f"({args.token_rate:g} tokens/s, 8 tokens an answer), `olol proxy` in its own process"
            + (" pinned to CPU 0 (the poison loops' process to CPU 1, the hosts and timing clients unpinned)"
               if r["pin"] else "")
            + ". 4 clients time "
            f"normal `/api/chat` requests for {args.seconds:g} s alone, then for {args.seconds:g} s while 10 loops "
            f"in another process send the requests that once marked hosts down ({len(POISON)} kinds, round robin, "
            + (f"{args.poison_rate:g} requests/s each" if args.poison_rate else "back to back")
            + f", unauthenticated); {args.rounds} rounds of both.\n\n"
            + table(
                ["round", "phase", "normal requests", "p50", "p90"],
                [
                    row
                    for i, (calm, under) in enumerate(r["rounds"], 1)
                    for row in (
                        [i, "alone", len(calm), _ms(calm, 50), _ms(calm, 90)],
                        [i, "with 10 poison loops", len(under), _ms(under, 50), _ms(under, 90)],
                    )
                ],
            )
            + f"\n\nNormal p50 change under poison (median of the rounds' p50s): {change:+.1f}%. "
            + "Poison answers by status: "
            + ", ".join(f"{k}: {v}" for k, v in sorted(r["tally"].items()))
            + f". Normal requests that failed under poison: {len(r['failed'])}"
            + f". Hosts marked down at the end: {r['down']}. Proxy CPU (median of the rounds, share of one core): "
            + f"{statistics.median(c for c, _ in r['proxy_cpu']) * 100:.0f}% alone, "
            + f"{statistics.median(u for _, u in r['proxy_cpu']) * 100:.0f}% under poison; the poison loops' "
            + f"process: {statistics.median(r['loops_cpu']) * 100:.0f}%.\n"
        )
        print(md)
        if args.report:
            write_section("reliability-poison", md)
    if "bodies" in parts:
        r = await bodies(args)
        md = (
            "## Reliability: 8 x 63 MiB bodies at once\n\n"
            f"`{command}` ({_load()}): 8 concurrent `/api/chat` requests of {r['size']:.0f} MiB each (one long "
            "message) to `olol proxy` (default limits) over one Ollama simulator; proxy RSS from /proc "
            "(VmHWM for the peak).\n\n"
            + table(["proxy RSS before", "peak", "2 s after", "answers", "took"], [[
                f"{r['idle']:.0f} MiB",
                f"{r['peak']:.0f} MiB",
                f"{r['after']:.0f} MiB",
                ", ".join(f"{s}: {r['statuses'].count(s)}" for s in sorted(set(r["statuses"]))),
                f"{r['took']:.1f} s",
            ]])
            + "\n"
        )
        print(md)
        if args.report:
            write_section("reliability-bodies", md)
    if "fuzz" in parts:
        r = await fuzz(args)
        total = sum(r["tally"].values())
        errors = sum(v for k, v in r["tally"].items() if k >= 500)
        md = (
            "## Reliability: fuzzed bodies through agents\n\n"
            f"`{command}` ({_load()}): {total} hypothesis-generated `/api/chat` and `/api/generate` bodies "
            "(any JSON in any field, and almost-right values: nulls or objects among list items, durations past "
            "int64 nanoseconds, nesting 20-600 deep) through `olol proxy` to 2 agents over "
            "Ollama simulators.\n\n"
            + table(["status", "answers"], sorted(r["tally"].items()))
            + f"\n\n5xx answers: {errors}. Hosts marked down at the end: {r['down']}.\n"
        )
        print(md)
        if args.report:
            write_section("reliability-fuzz", md)


if __name__ == "__main__":
    asyncio.run(main())
