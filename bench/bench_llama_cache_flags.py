"""Which llama-server settings keep prompt-prefix reuse working, measured on the real Gemma 3 270M.

    python -m bench.bench_llama_cache_flags

One llama-server (`-t 1 -c 4096`) per setting, requests straight to `/completion`
with `cache_prompt: true`: a ~TOKENS-token prompt A, a follow-up sharing A (reuse right
away), two unrelated prompts B and C, then another follow-up of A (does A survive
other traffic?). Reported: llama.cpp's `timings.cache_n` and the follow-ups' wall time.
Figures go into the `llama-cache-flags` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from typing import Any

import aiohttp

from bench._report import table, write_section
from bench.bench_cache_routing import words
from bench.bench_proxy_harness import machine
from olol.backends.llamacpp.bins import ensure_built
from olol.backends.llamacpp.gemma_model import ensure_gemma
from olol.backends.llamacpp.process import LlamaServerConfig, LlamaServerProcess

SETTINGS = (
    ("--parallel 1", ["--parallel", "1"]),
    ("--parallel 1 --cache-ram 0", ["--parallel", "1", "--cache-ram", "0"]),
    ("--parallel 2 --cache-ram 0", ["--parallel", "2", "--cache-ram", "0"]),
    ("--parallel 1 --cache-ram 0 --swa-full", ["--parallel", "1", "--cache-ram", "0", "--swa-full"]),
)


async def complete(http: aiohttp.ClientSession, url: str, prompt: str) -> tuple[float, int]:
    start = time.perf_counter()
    async with http.post(url + "/completion", json={"prompt": prompt, "n_predict": 4, "cache_prompt": True,
                                                    "temperature": 0}) as r:
        body: dict[str, Any] = await r.json()
    return time.perf_counter() - start, int(body["timings"].get("cache_n", 0))


async def probe(flags: list[str], tokens: int) -> list[object]:
    rnd = random.Random(5)
    a, b, c = (words(rnd, tokens) for _ in range(3))
    # swa_full set from the row, not OLOL's default (on for this sliding-window model), to measure both.
    server = LlamaServerProcess(LlamaServerConfig(model_path=ensure_gemma(), ctx_size=4096, threads=1,
                                                  embeddings=False, swa_full="--swa-full" in flags,
                                                  extra_args=tuple(f for f in flags if f != "--swa-full"),
                                                  binary=ensure_built().llama_server))
    await server.start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http:
            cold, _ = await complete(http, server.url, a)
            warm, hit = await complete(http, server.url, a + " One more question?")
            await complete(http, server.url, b)
            await complete(http, server.url, c)
            later, kept = await complete(http, server.url, a + " And another one?")
    finally:
        await server.close()
    return [f"{cold:.2f}", f"{warm:.2f}", hit, f"{later:.2f}", kept]


async def run(tokens: int) -> list[list[object]]:
    return [[name, *(await probe(flags, tokens))] for name, flags in SETTINGS]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=400)
    args = parser.parse_args()
    header = machine()
    rows = asyncio.run(run(args.tokens))
    markdown = (
        "## llama-server settings for prefix reuse (`bench_llama_cache_flags`)\n\n"
        f"`python -m bench.bench_llama_cache_flags --tokens {args.tokens}`: Gemma 3 270M Q4_K_M, `-t 1 -c 4096`, "
        f"`/completion` with `cache_prompt: true`; {header}. A follow-up of prompt A right away, then after two "
        "unrelated prompts; `cache_n`: prompt tokens llama.cpp served from cache.\n\n"
        + table(["settings", "A cold (s)", "follow-up (s)", "cache_n", "A after B, C (s)", "cache_n"], rows)
    )
    print(markdown)
    write_section("llama-cache-flags", markdown)


if __name__ == "__main__":
    main()
