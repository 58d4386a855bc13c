"""A frozen host mid-stream: SIGSTOP one host while streams run on it, and time what the clients see.

A host stopped with SIGSTOP keeps its TCP connections open and answers nothing (power loss, a
partition). Every host is a real process on loopback (an Ollama simulator, behind an OLOL agent
unless `--via ollama`); `olol proxy` runs in its own process with its default settings (stall
timeout: 10 s + 4 measured gaps; probes every second). `--streams` streams start, spread over the
hosts; once every stream has its first tokens, one host is stopped. Each stream on it must end
(completed after a resume, or a clear error line) within the stall timeout; one still open after
`--hang-after` seconds counts as hung. The gap is the time from the SIGSTOP to the stream's next
line. `--no-resume` runs the proxy with resume off (the stream ends with an error line instead).

    python -m bench.bench_sigstop --report
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

from bench._report import table, write_section
from bench.bench_soak import TOKEN, SimHost, _free_port, _spawn


@dataclass
class Stream:
    host: str = ""
    outcome: str = "hung"
    gap_s: float | None = None
    resumes: int = 0
    tokens: int = 0
    lines: list[float] = field(default_factory=list)


async def _stream(http: aiohttp.ClientSession, url: str, n: int, predict: int, stream: Stream,
                  started: asyncio.Event) -> None:
    body = {"model": "llama3.2", "prompt": f"sigstop {n}", "options": {"num_predict": predict}}
    async with http.post(url + "/api/generate", json=body) as resp:
        stream.host = resp.headers.get("X-OLOL-Host", "")
        async for raw in resp.content:
            line = json.loads(raw)
            stream.lines.append(time.monotonic())
            if "error" in line:
                stream.outcome = "error line"
                return
            stream.tokens += 1
            if stream.tokens == 3:
                started.set()
            if line.get("done"):
                stream.resumes = int((line.get("olol") or {}).get("resumes", 0))
                stream.outcome = "completed, resumed" if stream.resumes else "completed"
                stream.tokens = int(line.get("eval_count") or 0)
                return


async def run(args: argparse.Namespace) -> dict[str, object]:
    hosts = [SimHost(args.via, args.token_rate, args.parallel) for _ in range(args.hosts)]
    proxy: asyncio.subprocess.Process | None = None
    victim = None
    try:
        await asyncio.gather(*(h.start() for h in hosts))
        port = _free_port()
        argv = [sys.executable, "-m", "olol", "proxy", "--host", "127.0.0.1", "--port", str(port),
                "--servers", ",".join(h.spec for h in hosts), "--token", TOKEN, "--no-affinity",
                "--balancer", "round_robin", "--default-parallel", str(args.parallel), "--log-level", "error",
                "--state-dir", tempfile.mkdtemp(prefix="olol-sigstop-")]
        if args.no_resume:
            argv.append("--no-resume")
        proxy, _ = await _spawn(*argv)
        url = f"http://127.0.0.1:{port}"
        streams = [Stream() for _ in range(args.streams)]
        events = [asyncio.Event() for _ in streams]
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            tasks = [asyncio.create_task(_stream(http, url, n, args.predict, s, e))
                     for n, (s, e) in enumerate(zip(streams, events, strict=True))]
            async with asyncio.timeout(60):
                await asyncio.gather(*(e.wait() for e in events))
            target = hosts[0]
            victim = target.agent if args.via == "agents" else target.sim
            assert victim is not None
            os.kill(victim.pid, signal.SIGSTOP)
            frozen_at = time.monotonic()
            _, pending = await asyncio.wait(tasks, timeout=args.hang_after)
            for task in pending:
                task.cancel()
            for stream in streams:
                after = [t for t in stream.lines if t > frozen_at]
                stream.gap_s = after[0] - frozen_at if after else None
        on_frozen = [s for s in streams if s.host == target.spec]
        gaps = sorted(s.gap_s for s in on_frozen if s.gap_s is not None) or [0.0]
        return {
            "via": args.via,
            "resume": not args.no_resume,
            "streams": args.streams,
            "on_frozen_host": len(on_frozen),
            "outcomes": dict(Counter(s.outcome for s in on_frozen)),
            "others": dict(Counter(s.outcome for s in streams if s.host != target.spec)),
            "whole_answers": sum(s.tokens == args.predict for s in on_frozen if s.outcome.startswith("completed")),
            "gap_p50_s": round(statistics.median(gaps), 2),
            "gap_max_s": round(gaps[-1], 2),
        }
    finally:
        if victim is not None and victim.returncode is None:
            os.kill(victim.pid, signal.SIGCONT)
        if proxy is not None and proxy.returncode is None:
            proxy.kill()
            await proxy.wait()
        await asyncio.gather(*(h.stop() for h in hosts))


def _markdown(results: list[dict[str, object]], args: argparse.Namespace) -> str:
    rows = []
    for r in results:
        outcomes = r["outcomes"]
        assert isinstance(outcomes, dict)
        rows.append([f"resume {'on' if r['resume'] else 'off'}", r["on_frozen_host"],
                     outcomes.get("completed, resumed", 0), r["whole_answers"], outcomes.get("error line", 0),
                     outcomes.get("hung", 0), r["gap_p50_s"], r["gap_max_s"]])
    kind = "agents over Ollama simulators (the agent is stopped)" if args.via == "agents" else "Ollama simulators"
    load = os.getloadavg()[0]
    return "\n".join([
        "### Reliability: a host frozen mid-stream (SIGSTOP)",
        "",
        f"`python -m bench.bench_sigstop --via {args.via} --report` on {os.cpu_count()} CPUs (load average "
        f"{load:.1f} at the end), everything on loopback: {args.hosts} hosts ({kind}, {args.token_rate:g} "
        f"tokens/s per stream, {args.predict} tokens per answer), `olol proxy` with its defaults (stall timeout "
        f"10 s + 4 measured gaps, probes every 1 s). {args.streams} streams round-robin over the hosts; once each "
        f"has its first tokens one host gets SIGSTOP. Gap: SIGSTOP to the stream's next line; hung: still open "
        f"after {args.hang_after:g} s. Before issue 20 such streams never ended (5 of 5 still open at 450 s).",
        "",
        table(["proxy", "streams on the frozen host", "completed after a resume", "whole answers",
               "error line", "hung", "gap p50 (s)", "gap max (s)"], rows),
        "",
        "Streams on the other hosts: " + "; ".join(
            f"resume {'on' if r['resume'] else 'off'}: {r['others']}" for r in results) + ". The gap is the "
        "monitor noticing the silent host (its feed quiet for 2 s, then a probe), the 2 s grace a host marked down "
        "gets before its waits end, and the continuation's first token on another host; the stall timeout is the "
        "bound when a monitor does not notice.",
    ])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", type=int, default=60)
    p.add_argument("--hosts", type=int, default=3)
    p.add_argument("--via", choices=["agents", "ollama"], default="agents")
    p.add_argument("--token-rate", type=float, default=5.0)
    p.add_argument("--predict", type=int, default=60)
    p.add_argument("--parallel", type=int, default=100)
    p.add_argument("--hang-after", type=float, default=60.0)
    p.add_argument("--no-resume", action="store_true", help="only the run with resume off")
    p.add_argument("--report", action="store_true", help="run with resume on and off; write BENCHMARKS.md")
    args = p.parse_args()
    results = []
    for no_resume in ([False, True] if args.report else [args.no_resume]):
        results.append(asyncio.run(run(argparse.Namespace(**{**vars(args), "no_resume": no_resume}))))
        print(json.dumps(results[-1], indent=2))
    if args.report:
        write_section("sigstop", _markdown(results, args))
    hung = sum(int(r["outcomes"].get("hung", 0)) for r in results)  # type: ignore[attr-defined]
    sys.exit(1 if hung else 0)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
