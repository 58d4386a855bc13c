"""Soak: many concurrent streams through the proxy for minutes while hosts restart at random.

Every host is a real process on loopback (an Ollama simulator, behind an OLOL
agent unless `--via ollama`); the proxy is `olol proxy` in its own process, with
the cluster token on. A fixed number of client streams run back to back for
`--duration` seconds; every `--restart-every` seconds (on average) one host is
killed with SIGKILL and started again on the same port a few seconds later.

Each request must end one of two ways: it completes (`done: true`), or it fails
with a clear error (an HTTP error with an Ollama-shaped body, or a final
`{"error": ...}` line). A request still open after `--request-timeout` is
counted as hung; a stream that stops without either is counted as unclear. The
proxy's RSS is sampled every second to show memory stays bounded.

    python -m bench.bench_soak --streams 1000 --duration 300 --report
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil

from bench._report import table, write_section

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "soak-cluster-token-0123456789abcdef"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _spawn(*argv: str) -> tuple[asyncio.subprocess.Process, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        while True:
            line = (await proc.stdout.readline()).decode()
            if not line:
                raise RuntimeError(f"{argv[:4]} exited before READY")
            if line.startswith("READY "):
                return proc, line.split(" ", 1)[1].strip()


@dataclass
class SimHost:
    """An Ollama simulator, optionally behind an agent; `restart()` kills the front process for real."""

    via: str
    token_rate: float
    parallel: int
    sim_port: int = field(default_factory=_free_port)
    agent_port: int = field(default_factory=_free_port)
    sim: asyncio.subprocess.Process | None = None
    agent: asyncio.subprocess.Process | None = None
    restarts: int = 0

    @property
    def spec(self) -> str:
        return f"127.0.0.1:{self.agent_port}" if self.via == "agents" else f"http://127.0.0.1:{self.sim_port}"

    async def _start_sim(self) -> None:
        self.sim, _ = await _spawn(
            sys.executable,
            "-m",
            "tests.support.ollama_sim",
            "--port",
            str(self.sim_port),
            "--models",
            "llama3.2",
            "--parallel",
            str(self.parallel),
            "--max-queue",
            "100000",
            "--token-rate",
            str(self.token_rate),
        )

    async def _start_agent(self) -> None:
        self.agent, _ = await _spawn(
            sys.executable,
            "-m",
            "olol",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.agent_port),
            "--ollama-host",
            f"http://127.0.0.1:{self.sim_port}",
            "--parallel",
            str(self.parallel),
            "--async",
            "--token",
            TOKEN,
            "--log-level",
            "error",
        )

    async def start(self) -> None:
        await self._start_sim()
        if self.via == "agents":
            await self._start_agent()

    async def restart(self, down_for: float) -> None:
        """SIGKILL the host's front process (the agent, or the sim), then bring it back on the same port."""
        victim = self.agent if self.via == "agents" else self.sim
        assert victim is not None
        victim.kill()
        self.restarts += 1  # counted at the kill: a run may end while the host is still down
        await victim.wait()
        await asyncio.sleep(down_for)
        await (self._start_agent() if self.via == "agents" else self._start_sim())

    async def stop(self) -> None:
        for proc in (self.agent, self.sim):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()


@dataclass
class Tally:
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    resume_gaps: list[float] = field(default_factory=list)  # the longest gap between lines of a resumed stream
    short_answers: int = 0  # completed with fewer tokens than asked for (a resume lost some)
    tokens: int = 0
    open_now: int = 0
    peak_open: int = 0


def _kind(message: str) -> str:
    """Group error texts (host addresses and numbers vary) for the report."""
    for key in (
        "unreachable",
        "broke",
        "server busy",
        "timed out",
        "failed on every host",
        "not found",
        "connection",
        "cancel",
    ):
        if key in message.lower():
            return key
    return message[:60]


async def _one(http: aiohttp.ClientSession, url: str, tally: Tally, predict: int, timeout: float) -> None:
    body = {"model": "llama3.2", "prompt": f"soak {random.random()}", "options": {"num_predict": predict}}
    start = time.monotonic()
    tally.open_now += 1
    tally.peak_open = max(tally.peak_open, tally.open_now)
    outcome = "unclear"
    try:
        async with asyncio.timeout(timeout):
            async with http.post(url + "/api/generate", json=body) as resp:
                if resp.status != 200:
                    error = (await resp.json()).get("error")
                    tally.errors[f"{resp.status} {_kind(str(error))}"] += 1
                    outcome = "failed (clear error)" if isinstance(error, str) else "unclear"
                    return
                last, gap = time.monotonic(), 0.0
                async for raw in resp.content:
                    line = json.loads(raw)
                    now = time.monotonic()
                    gap, last = max(gap, now - last), now
                    if "error" in line:
                        tally.errors[f"stream {_kind(str(line['error']))}"] += 1
                        outcome = "failed (clear error)"
                        return
                    tally.tokens += 1
                    if line.get("done"):
                        outcome = "completed"
                        if (line.get("olol") or {}).get("resumes"):
                            outcome = "completed after a resume"
                            tally.resume_gaps.append(gap)
                        if line.get("eval_count") != predict and line.get("done_reason") == "length":
                            tally.short_answers += 1
                        tally.latencies.append(now - start)
                        return
    except TimeoutError:
        outcome = "hung"
    except (aiohttp.ClientError, ValueError) as exc:
        tally.errors[f"client {type(exc).__name__}"] += 1
    finally:
        tally.open_now -= 1
        tally.outcomes[outcome] += 1


async def _trace(http: aiohttp.ClientSession, url: str, tally: Tally, started: float, rss: psutil.Process) -> None:
    """One line a second: what the clients see and what the proxy says about its hosts."""
    try:
        async with http.get(url + "/api/status", timeout=aiohttp.ClientTimeout(total=2)) as resp:
            status = await resp.json()
        hosts = " ".join(f"{'+' if h['healthy'] else '-'}{h['in_flight']}" for h in status["hosts"])
        queues = sum(status.get("queues", {}).values())
    except Exception as exc:  # the trace must never stop the soak
        hosts, queues = f"status failed: {type(exc).__name__}", -1
    print(
        f"{time.monotonic() - started:6.1f}s open={tally.open_now} {dict(tally.outcomes)} hosts=[{hosts}] "
        f"queued={queues} rss={rss.memory_info().rss >> 20}MiB",
        file=sys.stderr,
        flush=True,
    )


async def run(args: argparse.Namespace) -> dict[str, object]:
    hosts = [SimHost(args.via, args.token_rate, args.parallel) for _ in range(args.hosts)]
    proxy: asyncio.subprocess.Process | None = None
    try:
        await asyncio.gather(*(h.start() for h in hosts))
        port = _free_port()
        proxy, _ = await _spawn(
            sys.executable,
            "-m",
            "olol",
            "proxy",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--servers",
            ",".join(h.spec for h in hosts),
            "--token",
            TOKEN,
            "--max-queue",
            "100000",
            "--max-queue-wait",
            "60",
            "--no-affinity",
            "--default-parallel",
            str(args.parallel),
            "--log-level",
            "error",
            "--state-dir",
            tempfile.mkdtemp(prefix="olol-soak-"),
        )
        url = f"http://127.0.0.1:{port}"
        rss = psutil.Process(proxy.pid)
        tally, samples = Tally(), []
        stop_at = time.monotonic() + args.duration

        async def client() -> None:
            while time.monotonic() < stop_at:
                await _one(http, url, tally, args.predict, args.request_timeout)

        async def chaos() -> None:
            while time.monotonic() < stop_at - 5:
                # Exponential gaps (restarts at random), capped at twice the mean so that even a short run
                # (the suite's 20 s) always sees one.
                await asyncio.sleep(min(random.expovariate(1 / args.restart_every), 2 * args.restart_every))
                await random.choice(hosts).restart(random.uniform(1.0, 4.0))

        async def sample() -> None:
            while True:
                samples.append((time.monotonic(), rss.memory_info().rss, tally.open_now))
                if args.verbose:
                    await _trace(http, url, tally, started, rss)
                await asyncio.sleep(1.0)

        connector = aiohttp.TCPConnector(limit=0)
        started = time.monotonic()
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as http:
            sampler = asyncio.create_task(sample())
            chaos_task = asyncio.create_task(chaos())
            await asyncio.gather(*(client() for _ in range(args.streams)))
            chaos_task.cancel()
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await chaos_task
        elapsed = time.monotonic() - started
        warm = [r for t, r, _ in samples if t - started > min(30.0, args.duration / 4)] or [samples[-1][1]]
        lat = sorted(tally.latencies) or [0.0]
        gaps = sorted(tally.resume_gaps) or [0.0]
        return {
            "streams": args.streams,
            "duration_s": round(elapsed),
            "hosts": args.hosts,
            "via": args.via,
            "restarts": sum(h.restarts for h in hosts),
            "requests": sum(tally.outcomes.values()),
            "outcomes": dict(tally.outcomes),
            "errors": dict(tally.errors.most_common(8)),
            "peak_concurrent": tally.peak_open,
            "tokens_per_s": round(tally.tokens / elapsed),
            "latency_p50_s": round(statistics.median(lat), 2),
            "latency_p99_s": round(lat[int(0.99 * (len(lat) - 1))], 2),
            "resumed_share": round(len(tally.resume_gaps) / max(1, sum(tally.outcomes.values())), 4),
            "resume_gap_p50_s": round(statistics.median(gaps), 2),
            "resume_gap_p99_s": round(gaps[int(0.99 * (len(gaps) - 1))], 2),
            "short_answers": tally.short_answers,
            "rss_mib_after_warmup": round(warm[0] / 2**20),
            "rss_mib_peak": round(max(r for _, r, _ in samples) / 2**20),
            "rss_mib_end": round(samples[-1][1] / 2**20),
        }
    finally:
        if proxy is not None and proxy.returncode is None:
            proxy.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(15):
                    await proxy.wait()
            if proxy.returncode is None:
                proxy.kill()
        await asyncio.gather(*(h.stop() for h in hosts))


def _markdown(r: dict[str, object], args: argparse.Namespace) -> str:
    outcomes = r["outcomes"]
    assert isinstance(outcomes, dict)
    rows = [[k, v] for k, v in sorted(outcomes.items())]
    errors = r["errors"]
    assert isinstance(errors, dict)
    kind = "agents over Ollama simulators" if args.via == "agents" else "Ollama simulators"
    return "\n".join(
        [
            "## Soak: concurrent streams with random host restarts",
            "",
            f"`python -m bench.bench_soak --streams {args.streams} --duration {args.duration} --hosts {args.hosts} "
            f"--via {args.via} --report` on {os.cpu_count()} CPUs, everything on loopback: "
            f"{r['hosts']} simulated hosts ({kind}, "
            f"{args.token_rate:g} tokens/s per stream, {args.predict} tokens per answer), `olol proxy` with the "
            f"cluster token, {r['restarts']} host restarts (SIGKILL, back after 1-4 s).",
            "",
            table(["outcome", "requests"], rows),
            "",
            f"{r['requests']} requests in {r['duration_s']} s, {r['peak_concurrent']} streams open at the peak, "
            f"{r['tokens_per_s']} tokens/s through the proxy; completed streams took {r['latency_p50_s']} s "
            f"(median) / {r['latency_p99_s']} s (p99). Proxy RSS: {r['rss_mib_after_warmup']} MiB after warm-up, "
            f"{r['rss_mib_peak']} MiB peak, {r['rss_mib_end']} MiB at the end.",
            "",
            f"Resume (on by default): {float(r['resumed_share']):.2%} of requests finished on another host after "
            f"theirs died mid-stream; the gap a client saw at a resume (longest pause between two lines of a resumed "
            f"stream) was {r['resume_gap_p50_s']} s (median) / {r['resume_gap_p99_s']} s (p99); "
            f"{r['short_answers']} completed answers had fewer tokens than asked for.",
            "",
            "Errors by kind: " + ", ".join(f"{k}: {v}" for k, v in errors.items()) if errors else "No errors.",
        ]
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--duration", type=float, default=300.0)
    p.add_argument("--hosts", type=int, default=6)
    p.add_argument("--via", choices=["agents", "ollama"], default="agents")
    p.add_argument("--token-rate", type=float, default=4.0)
    p.add_argument("--predict", type=int, default=24)
    p.add_argument("--parallel", type=int, default=400)
    p.add_argument("--restart-every", type=float, default=20.0)
    p.add_argument("--request-timeout", type=float, default=120.0)
    p.add_argument("--report", action="store_true", help="write the figures to BENCHMARKS.md")
    p.add_argument("--verbose", action="store_true", help="a line a second: outcomes, hosts, queue, RSS")
    args = p.parse_args()
    result = asyncio.run(run(args))
    print(json.dumps(result, indent=2))
    if args.report:
        write_section("soak", _markdown(result, args))
    outcomes = result["outcomes"]
    assert isinstance(outcomes, dict)
    sys.exit(1 if outcomes.get("hung") or outcomes.get("unclear") else 0)


if __name__ == "__main__":
    main()
