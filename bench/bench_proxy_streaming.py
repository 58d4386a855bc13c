"""Streaming tokens/s through the proxy vs straight from llama-server, on real llama.cpp, in one run.

    python -m bench.bench_proxy_streaming        # needs the llama.cpp build: scripts/build-llama-cpp.sh

A generated llama model (random weights, bigger than the test model so a token
takes milliseconds, not fractions of one) served by one `llama-server -t 1
--parallel 1`. The same greedy generation is streamed either directly from
llama-server's native `/completion` (SSE) or through the whole OLOL path: `olol
proxy` -> `olol server` agent (gRPC) -> the same llama-server, as `/api/generate`
NDJSON. Direct and proxied runs alternate (the order flips every pair) so
thermal and background drift hits both alike. Each run measures, at the client,
the token rate from first to last token (the stream rate) and from sending the
request to the final chunk (end to end); figures are medians over the pairs.
Both paths must produce the same text. Target: proxied >= 0.98x direct.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench._report import median, table, write_section
from bench.bench_proxy_harness import Cluster, figure, machine, save_plot
from olol.backends.llamacpp.bins import ensure_built
from olol.backends.llamacpp.process import LlamaServerConfig, LlamaServerProcess
from olol.backends.llamacpp.tiny_model import ensure_tiny_model

MODEL: dict[str, Any] = {
    "layers": 8,
    "width": 512,
    "ff": 1536,
    "heads": 8,
    "kv_heads": 4,
    "context": 1024,
    "name": "bench",
}
NAME = "bench"
PROMPT = "Once upon a time, in a land far away, there lived"
TOKENS = 128
PAIRS = 12
WARMUP = 1
TARGET = 0.98


@dataclass
class Stream:
    text: str
    tokens: int
    stream_rate: float  # tokens/s between the first and the last token, as the client saw them
    end_to_end: float  # tokens/s from sending the request to the final chunk
    engine_rate: float  # tokens/s llama-server reports for its own decoding

    @classmethod
    def timed(cls, started: float, stamps: list[float], done: float, text: str, engine_rate: float) -> Stream:
        if len(stamps) < 2:
            raise RuntimeError(f"only {len(stamps)} tokens streamed")
        return cls(
            text, len(stamps), (len(stamps) - 1) / (stamps[-1] - stamps[0]), len(stamps) / (done - started), engine_rate
        )


async def direct(http: aiohttp.ClientSession, url: str) -> Stream:
    body = {"prompt": PROMPT, "n_predict": TOKENS, "stream": True, "temperature": 0, "seed": 42}
    stamps: list[float] = []
    pieces: list[str] = []
    engine = 0.0
    started = time.perf_counter()
    async with http.post(url + "/completion", json=body) as resp:
        resp.raise_for_status()
        async for line in resp.content:
            if not line.startswith(b"data: "):
                continue
            event = json.loads(line[6:])
            if event.get("stop"):
                engine = float(event["timings"]["predicted_per_second"])
                break
            stamps.append(time.perf_counter())
            pieces.append(event.get("content", ""))
    return Stream.timed(started, stamps, time.perf_counter(), "".join(pieces), engine)


async def proxied(http: aiohttp.ClientSession, url: str) -> Stream:
    body = {
        "model": NAME,
        "prompt": PROMPT,
        "raw": True,
        "stream": True,
        "options": {"num_predict": TOKENS, "temperature": 0, "seed": 42},
    }
    stamps: list[float] = []
    pieces: list[str] = []
    engine = 0.0
    started = time.perf_counter()
    async with http.post(url + "/api/generate", json=body) as resp:
        resp.raise_for_status()
        async for line in resp.content:
            chunk = json.loads(line)
            if "error" in chunk:
                raise RuntimeError(chunk["error"])
            if chunk.get("done"):
                engine = chunk["eval_count"] / (chunk["eval_duration"] / 1e9)
                break
            stamps.append(time.perf_counter())
            pieces.append(chunk.get("response", ""))
    return Stream.timed(started, stamps, time.perf_counter(), "".join(pieces), engine)


async def measure() -> tuple[list[tuple[Stream, Stream]], str]:
    where = machine()
    binary = (await asyncio.to_thread(ensure_built)).llama_server
    model = await asyncio.to_thread(ensure_tiny_model, **MODEL)
    server = LlamaServerProcess(
        LlamaServerConfig(
            model_path=model, alias=NAME, ctx_size=1024, threads=1, parallel=1, embeddings=False, binary=binary
        )
    )
    await server.start()
    pairs: list[tuple[Stream, Stream]] = []
    try:
        async with Cluster() as cluster:
            agent = await cluster.spawn(
                "agent",
                [
                    sys.executable,
                    "-m",
                    "olol",
                    "server",
                    "--backend",
                    "llamacpp",
                    "--llama-url",
                    server.url,
                    "--model",
                    str(model),
                    "--model-name",
                    NAME,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                ],
            )
            proxy = await cluster.proxy([agent.url], model=NAME)
            # llama-server drops idle keep-alive connections after 5 s: a new connection per direct run.
            async with (
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as plain,
                aiohttp.ClientSession() as http,
            ):
                for _ in range(WARMUP):
                    await direct(plain, server.url)
                    await proxied(http, proxy.url)
                for i in range(PAIRS):
                    if i % 2:
                        d = await direct(plain, server.url)
                        p = await proxied(http, proxy.url)
                    else:
                        p = await proxied(http, proxy.url)
                        d = await direct(plain, server.url)
                    if p.text != d.text:
                        raise RuntimeError(f"greedy output differs:\n direct: {d.text!r}\n proxied: {p.text!r}")
                    pairs.append((d, p))
    finally:
        await server.close()
    return pairs, where


def plot(pairs: list[tuple[Stream, Stream]]) -> str:
    fig = figure(6.5, 3.2)
    ax = fig.subplots()
    xs = list(range(1, len(pairs) + 1))
    ax.plot(xs, [d.stream_rate for d, _ in pairs], "o-", label="direct llama-server")
    ax.plot(xs, [p.stream_rate for _, p in pairs], "s-", label="through olol proxy + agent")
    ax.set_xlabel("pair (direct and proxied run back to back)")
    ax.set_ylabel("tokens/s at the client")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return save_plot(fig, "proxy_streaming")


def report(pairs: list[tuple[Stream, Stream]], where: str) -> str:
    rows = []
    ratios = {}
    for label, key in (
        ("stream rate (first to last token)", "stream_rate"),
        ("end to end (incl. first token)", "end_to_end"),
        ("engine's own decode rate", "engine_rate"),
    ):
        d = median([getattr(x, key) for x, _ in pairs])
        p = median([getattr(y, key) for _, y in pairs])
        ratios[key] = median([getattr(y, key) / getattr(x, key) for x, y in pairs])
        rows.append([label, f"{d:.1f}", f"{p:.1f}", f"{ratios[key]:.3f}x"])
    # The engine's own speed drifts from run to run when the box is busy; the share of it that reaches the
    # client, run by run, is what the path itself costs.
    share_d = median([x.stream_rate / x.engine_rate for x, _ in pairs])
    share_p = median([y.stream_rate / y.engine_rate for _, y in pairs])
    rows.append(
        ["stream rate / engine rate, same run", f"{share_d:.3f}", f"{share_p:.3f}", f"{share_p / share_d:.3f}x"]
    )
    image = plot(pairs)
    shape = f"{MODEL['layers']} layers x {MODEL['width']} wide, f32"
    met = "met" if ratios["stream_rate"] >= TARGET else "NOT met"
    return "\n\n".join(
        [
            "## Streaming tokens/s through the proxy, real llama.cpp",
            f"`python -m bench.bench_proxy_streaming`. {where}.",
            f"Generated llama model ({shape}, random weights), one `llama-server -t 1 --parallel 1`; greedy, "
            f"{TOKENS} tokens of a raw prompt. Direct = llama-server's `/completion` SSE; proxied = `olol proxy` -> "
            f"agent (gRPC) -> the same llama-server, `/api/generate` NDJSON. {PAIRS} alternating pairs; medians, and "
            "ratios are medians of per-pair ratios. Both paths streamed identical text in every pair.",
            table(["tokens/s", "direct", "through olol", "olol / direct"], rows),
            f"**Stream rate through OLOL = {ratios['stream_rate']:.3f}x direct** (target >= {TARGET}x: {met}). "
            f"Of the engine's own speed in the same run, the client receives {share_p / share_d:.3f}x as much "
            f"through OLOL as directly ({'meets' if share_p / share_d >= TARGET else 'misses'} the target): when the "
            "engine rate row differs between the columns, the box's load moved the engine between runs, and this "
            "last figure is the one that isolates the path.",
            f"![tokens/s per pair, direct vs through the proxy]({image})",
        ]
    )


def main() -> None:
    pairs, where = asyncio.run(measure())
    section = report(pairs, where)
    write_section("proxy-streaming", section)
    print(section)


if __name__ == "__main__":
    main()
