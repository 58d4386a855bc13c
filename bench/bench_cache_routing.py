"""KV-cache-aware routing on REAL llama.cpp hosts serving a real model, against the other policies.

    python -m bench.bench_cache_routing                 # the issue's sizes (long on 2 cores)
    python -m bench.bench_cache_routing --quick         # the sizes BENCHMARKS.md states

Hosts: `--hosts` llama-servers on Gemma 3 270M (Q4_K_M, `olol.backends.llamacpp.gemma_model`), each
`-t 1 -c CTX --parallel SLOTS --cache-ram 64`, each behind an in-process agent, so the
proxy sees them as a real cluster does (state feed, gRPC streams). Prompt caches are
sized so that no host can hold every prefix at once: a slot keeps one prompt's KV
cache and `--cache-ram 64` bounds llama-server's host-memory prompt cache to about
half of workload (b)'s system prompts (llama.cpp's default, 8 GiB, holds every prompt
of a 270M model on every host, where any policy hits). `--llama-args "--cache-ram 0"`
leaves the slots alone: with as many closed-loop clients as slots in the cluster,
the one free slot decides where a request can start, and no routing helps. OLOL
starts llama-server with `--swa-full` for this sliding-window model (without it a
prompt that only shares a prefix with the cached one reuses nothing).

Workloads (seeded; closed-loop clients; every prompt of a run starts with a tag
unique to the run, so no run inherits another's caches):
  (a) chat: U users x T turns, each user under a ~1000-token system prompt of their own (an
      assistant's instructions with the user's profile and memory), each turn appending the
      model's reply and a question;
  (b) shared system prompts: S system prompts of ~N tokens, short questions under them at random;
  (c) no sharing: unrelated prompts (the control).
Every policy runs every workload on the same hosts in each round (the order rotates
by round); figures are medians over rounds of each run's TTFT p50/p95, output
tokens/s, and prompt tokens the hosts actually evaluated (prompt_eval_count minus
prompt_eval_cached_count, i.e. llama.cpp's cache_n).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench._report import median, table, write_section
from bench.bench_proxy_harness import figure, machine, percentile, save_plot
from olol.agent.config import AgentConfig
from olol.agent.server import AioAgent
from olol.backends.llamacpp.backend import LlamaCppBackend
from olol.backends.llamacpp.bins import ensure_built
from olol.backends.llamacpp.gemma_model import NAME, ensure_gemma
from olol.backends.llamacpp.process import LlamaServerConfig, LlamaServerProcess
from olol.proxy import ProxyConfig, start_proxy

TRACE = bool(os.environ.get("OLOL_BENCH_TRACE"))  # one line a request, to see why a policy did what it did
POLICIES = ("round_robin", "least_connections", "adaptive", "cache_aware")
WORKLOADS = ("chat", "shared", "unrelated")
_VOCABULARY = (
    "the system cluster request model answer token cache host policy route prompt user agent tool search "
    "document context memory result query index vector table record value order account invoice payment "
    "customer support ticket travel flight hotel booking weather report summary detail rule step check list "
    "always never please carefully briefly explain describe return format json field name date price total"
)
WORDS = _VOCABULARY.split()


@dataclass
class Sizes:
    users: int = 8
    turns: int = 6
    systems: int = 6
    system_tokens: int = 1500
    questions: int = 48
    unrelated: int = 24
    unrelated_tokens: int = 200
    predict: int = 16
    # Each user's own context (an assistant's instructions with the user's profile and memory), and the
    # replies, which stay in the history: what a turn sent to a host without it evaluates again.
    chat_system_tokens: int = 1000
    chat_predict: int = 32
    clients: int = 4


QUICK = Sizes(users=5, turns=3, systems=6, system_tokens=300, questions=24, unrelated=8, unrelated_tokens=100,
              predict=8, chat_system_tokens=100, chat_predict=8, clients=4)


def words(rnd: random.Random, tokens: int) -> str:
    # ~1.3 tokens a word for this vocabulary with Gemma's tokenizer, near enough for sizing.
    return " ".join(rnd.choice(WORDS) for _ in range(max(1, int(tokens / 1.3)))) + "."


@dataclass
class Sample:
    ttft: float
    prompt: int
    cached: int
    output: int
    route: str
    host: str = ""


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    wall: float = 0.0

    def row(self) -> dict[str, float]:
        ttfts = [s.ttft for s in self.samples]
        return {
            "ttft_p50": percentile(ttfts, 50),
            "ttft_p95": percentile(ttfts, 95),
            "tokens_per_s": sum(s.output for s in self.samples) / self.wall,
            "evaluated": float(sum(s.prompt - s.cached for s in self.samples)),
            "cache_routed": sum(s.route.startswith("cache:") for s in self.samples) / len(self.samples),
        }


async def chat(http: aiohttp.ClientSession, url: str, messages: list[dict[str, str]], predict: int,
               run: Run) -> str:
    body = {"model": NAME, "messages": messages, "stream": True,
            "options": {"temperature": 0, "seed": 1, "num_predict": predict}}
    start = time.perf_counter()
    first: float | None = None
    text: list[str] = []
    final: dict[str, Any] = {}
    async with http.post(url + "/api/chat", json=body) as resp:
        resp.raise_for_status()
        route = resp.headers.get("X-OLOL-Route", "")
        host = resp.headers.get("X-OLOL-Host", "")
        async for line in resp.content:
            if not line.strip():
                continue
            chunk = json.loads(line)
            if first is None:
                first = time.perf_counter() - start
            text.append(chunk.get("message", {}).get("content", ""))
            if chunk.get("done"):
                final = chunk
    run.samples.append(Sample(first or 0.0, int(final.get("prompt_eval_count", 0)),
                              int(final.get("prompt_eval_cached_count", 0)), int(final.get("eval_count", 0)),
                              route, host))
    if TRACE:
        s = run.samples[-1]
        print(f"  {time.perf_counter() - start:6.2f}s ttft={s.ttft:5.2f} {s.host[-6:]} {s.route:22s} "
              f"prompt={s.prompt} cached={s.cached} :: {messages[0]['content'][:34]!r}", flush=True)
    return "".join(text)


async def workload(kind: str, url: str, sizes: Sizes, seed: int, tag: str) -> Run:
    rnd = random.Random(seed)
    run = Run()
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        start = time.perf_counter()
        if kind == "chat":
            async def user(u: int) -> None:
                messages = [{"role": "system", "content": f"{tag} User {u}. " + words(rnd, sizes.chat_system_tokens)},
                            {"role": "user", "content": words(rnd, 25)}]
                for _ in range(sizes.turns):
                    # A user reads and types between turns: without it the users move in lockstep and
                    # round robin sends each one back to the same host by accident.
                    await asyncio.sleep(rnd.uniform(0.0, 1.5))
                    reply = await chat(http, url, messages, sizes.chat_predict, run)
                    messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": words(rnd, 25)}]

            await asyncio.gather(*(user(u) for u in range(sizes.users)))
        else:
            if kind == "shared":
                systems = [f"{tag} Agent {i}. " + words(rnd, sizes.system_tokens) for i in range(sizes.systems)]
                jobs = [[{"role": "system", "content": rnd.choice(systems)},
                         {"role": "user", "content": words(rnd, 20)}] for _ in range(sizes.questions)]
            else:
                jobs = [[{"role": "user", "content": f"{tag} {i}. " + words(rnd, sizes.unrelated_tokens)}]
                        for i in range(sizes.unrelated)]
            queue: asyncio.Queue[list[dict[str, str]]] = asyncio.Queue()
            for job in jobs:
                queue.put_nowait(job)

            async def client() -> None:
                while not queue.empty():
                    await chat(http, url, queue.get_nowait(), sizes.predict, run)

            await asyncio.gather(*(client() for _ in range(sizes.clients)))
        run.wall = time.perf_counter() - start
    return run


@dataclass
class Hosts:
    servers: list[LlamaServerProcess]
    agents: list[AioAgent]

    @property
    def targets(self) -> list[str]:
        return [a.target for a in self.agents]

    async def stop(self) -> None:
        for agent in self.agents:
            await agent.stop()
        for server in self.servers:
            await server.close()


async def start_hosts(n: int, model: Path, ctx: int, slots: int, llama_args: list[str]) -> Hosts:
    bins = ensure_built()
    hosts = Hosts([], [])
    for _ in range(n):
        server = LlamaServerProcess(LlamaServerConfig(
            model_path=model, alias=f"{NAME}:latest", ctx_size=ctx, threads=1, parallel=slots, embeddings=False,
            extra_args=tuple(llama_args), binary=bins.llama_server))
        await server.start()
        hosts.servers.append(server)
        backend = LlamaCppBackend(url=server.url, model_path=model, model_name=NAME)
        hosts.agents.append(await AioAgent.start(AgentConfig(host="127.0.0.1", port=0, state_interval=0.2), backend))
    return hosts


async def one_run(hosts: Hosts, policy: str, kind: str, sizes: Sizes, seed: int, tag: str) -> Run:
    proxy = await start_proxy(ProxyConfig(host="127.0.0.1", port=0, servers=hosts.targets, balancer=policy,
                                          probe_interval=0.5, max_queue_wait=3600.0, first_byte_timeout=None))
    try:
        return await workload(kind, proxy.url, sizes, seed, tag)
    finally:
        await proxy.stop()


async def bench(args: argparse.Namespace, sizes: Sizes) -> dict[tuple[str, str], list[dict[str, float]]]:
    model = ensure_gemma(say=print)
    hosts = await start_hosts(args.hosts, model, args.ctx, args.slots, args.llama_args.split())
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    try:
        for r in range(args.rounds):
            chosen = tuple(p for p in POLICIES if p in args.policies)
            order = chosen[r % len(chosen):] + chosen[:r % len(chosen)]
            for kind in args.workloads:
                for policy in order:
                    t0 = time.perf_counter()
                    # Same seed for every policy in a round: the same prompts; a new tag: cold caches.
                    run = await one_run(hosts, policy, kind, sizes, seed=1000 * r + WORKLOADS.index(kind),
                                        tag=f"[{r}-{kind}-{policy}]")
                    row = run.row()
                    results.setdefault((kind, policy), []).append(row)
                    print(f"round {r} {kind:9s} {policy:17s} {time.perf_counter() - t0:6.1f}s "
                          + " ".join(f"{k}={v:.3f}" for k, v in row.items()), flush=True)
    finally:
        await hosts.stop()
    return results


def summarize(results: dict[tuple[str, str], list[dict[str, float]]]) -> dict[tuple[str, str], dict[str, float]]:
    return {key: {m: median([row[m] for row in rows]) for m in rows[0]} for key, rows in results.items()}


def report(summary: dict[tuple[str, str], dict[str, float]], args: argparse.Namespace, sizes: Sizes,
           header: str, minutes: float) -> str:
    rows = []
    short = "RR" if "round_robin" in args.policies else args.policies[0]
    for kind in args.workloads:
        base = "round_robin" if (kind, "round_robin") in summary else args.policies[0]
        rr = summary[(kind, base)]
        for policy in POLICIES:
            if (kind, policy) not in summary:
                continue
            s = summary[(kind, policy)]
            rows.append((kind, policy, f"{s['ttft_p50']:.2f}", f"{s['ttft_p95']:.2f}",
                         f"{s['ttft_p50'] / rr['ttft_p50']:.2f}x", f"{s['tokens_per_s']:.2f}", f"{s['evaluated']:,.0f}",
                         f"{s['evaluated'] / rr['evaluated']:.2f}x" if rr["evaluated"] else "-",
                         f"{100 * s['cache_routed']:.0f}%"))
    return (
        f"## KV-cache-aware routing on real llama.cpp (`bench_cache_routing`{'' if args.quick else ', full sizes'}"
        f"{', the control' if args.workloads == ['unrelated'] else ''})\n\n"
        f"`python -m bench.bench_cache_routing {command_line(args)}`: "
        f"{args.hosts} llama-servers on Gemma 3 270M Q4_K_M, each `-t 1 -c {args.ctx} --parallel {args.slots} "
        f"{args.llama_args}` behind an agent; {header}. Whole run: {minutes:.1f} min.\n\n"
        f"Sizes: (a) chat {sizes.users} users x {sizes.turns} turns (a ~{sizes.chat_system_tokens}-token system "
        "prompt of each user's own, ~25-token questions, "
        "0-1.5 s to read and type before each turn); "
        f"(b) {sizes.systems} system prompts of ~{sizes.system_tokens} tokens, {sizes.questions} questions; "
        f"(c) {sizes.unrelated} unrelated ~{sizes.unrelated_tokens}-token prompts; {sizes.chat_predict} output "
        f"tokens a reply in (a), {sizes.predict} in (b) and (c) (greedy); "
        f"{sizes.clients} closed-loop clients for (b) and (c), one per user for (a). "
        f"Medians over {args.rounds} rounds of each run's figures. `evaluated`: prompt tokens the hosts evaluated "
        "(sent minus served from cache); `cache-routed`: replies whose `X-OLOL-Route` was `cache:<chars>`.\n\n"
        + table(["workload", "policy", "TTFT p50 (s)", "TTFT p95 (s)", f"p50 vs {short}", "output tok/s",
                 "evaluated", f"vs {short}", "cache-routed"], rows)
    )


def command_line(args: argparse.Namespace) -> str:
    """The options of this run that differ from the defaults, as typed."""
    words = ["--quick"] if args.quick else []
    words.append(f"--rounds {args.rounds}")
    if args.workloads != list(WORKLOADS):
        words.append("--workloads " + " ".join(args.workloads))
    if args.policies != list(POLICIES):
        words.append("--policies " + " ".join(args.policies))
    return " ".join(words)


def plot(summary: dict[tuple[str, str], dict[str, float]], kinds: list[str], policies: list[str], name: str) -> str:
    fig = figure(9.0, 3.6)
    axes = fig.subplots(1, 2)
    width = 0.8 / len(policies)
    for i, policy in enumerate(policies):
        xs = [k + (i - len(policies) / 2 + 0.5) * width for k in range(len(kinds))]
        axes[0].bar(xs, [summary[(k, policy)]["ttft_p50"] for k in kinds], width, label=policy)
        axes[1].bar(xs, [summary[(k, policy)]["evaluated"] for k in kinds], width, label=policy)
    for ax, title in zip(axes, ("TTFT p50 (s)", "prompt tokens evaluated"), strict=True):
        ax.set_xticks(range(len(kinds)), kinds)
        ax.set_title(title)
    axes[0].legend(fontsize=7)
    return save_plot(fig, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the smaller sizes this box can run in ~12 minutes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hosts", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=4096, help="llama-server -c (shared by its slots)")
    parser.add_argument("--slots", type=int, default=2, help="llama-server --parallel")
    parser.add_argument("--llama-args", default="--cache-ram 64", help="more llama-server flags (see the docstring)")
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    parser.add_argument("--no-write", action="store_true", help="print, do not touch BENCHMARKS.md")
    args = parser.parse_args()
    sizes = QUICK if args.quick else Sizes()
    header = machine()
    start = time.perf_counter()
    results = asyncio.run(bench(args, sizes))
    summary = summarize(results)
    minutes = (time.perf_counter() - start) / 60
    markdown = report(summary, args, sizes, f"{header}, load average at the end {os.getloadavg()[0]:.1f}", minutes)
    if not args.no_write:
        # The quick sizes and the sizes are two sections: the second takes hours here for every policy.
        name = "cache-routing" if args.quick else "cache-routing-full"
        if args.workloads == ["unrelated"]:
            name += "-control"  # (c) alone: its own section, so a run of it leaves the others' figures
        markdown += f"\n\n![cache routing]({plot(summary, args.workloads, args.policies, name.replace('-', '_'))})"
        write_section(name, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
