"""A large cluster's state, made up without starting anything: what the dashboard's size bound is checked on.

Shared by tests/proxy/test_dashboard.py and bench/bench_dashboard.py: 50 hosts
(GPU servers with realistic ids, VRAM and RAM figures) holding 200 models, each
model on 3 hosts and loaded on one, with latency measured for every pair, 50
routing decisions and a few queues.
"""

from __future__ import annotations

from olol.proxy.config import ProxyConfig
from olol.proxy.context import ProxyContext
from tests.proxy.fakes import FakeBackend

__all__ = ["large_context"]

_FAMILIES = ("llama3.1", "qwen2.5-coder", "mistral-nemo", "gemma2", "phi3.5", "deepseek-r1", "command-r", "granite3")
_QUANTS = ("q4_K_M", "q5_K_M", "q8_0", "fp16", "q4_0")


def large_context(hosts: int = 50, models: int = 200, copies: int = 3) -> ProxyContext:
    specs = [f"gpu-node-{i:03d}.cluster.example.internal:50051" for i in range(hosts)]
    ctx = ProxyContext.build(ProxyConfig(host="127.0.0.1", port=0, servers=specs),
                             backend_factory=lambda _spec: FakeBackend(()))
    names = [f"{_FAMILIES[i % len(_FAMILIES)]}:{(i // len(_FAMILIES)) + 1}b-instruct-{_QUANTS[i % len(_QUANTS)]}"
             for i in range(models)]
    held: dict[str, list[dict[str, object]]] = {spec: [] for spec in specs}
    loaded: dict[str, list[dict[str, object]]] = {spec: [] for spec in specs}
    for i, name in enumerate(names):
        tag = {"name": name, "model": name, "size": 4_920_000_000 + i * 1_000_003,
               "details": {"quantization_level": _QUANTS[i % len(_QUANTS)].upper(), "family": "llama",
                           "parameter_size": "8.0B", "format": "gguf"}}
        for c in range(copies):
            held[specs[(i + c * 7) % hosts]].append(tag)
        loaded[specs[i % hosts]].append(tag)
    for n, spec in enumerate(specs):
        host = ctx.cluster.hosts[spec]
        host.set_models(held[spec])
        host.set_running(loaded[spec])
        host.kind, host.parallel, host.in_flight = "ollama", 4, n % 5
        host.ram_free = 60_000_000_000 + n
        host.hardware = {"vram_total": 80_000_000_000, "vram_free": 20_000_000_000 + n, "ram_total": 256_000_000_000}
        ctx.cluster.mark_up(host)
        for name in host.models:
            ctx.cluster.stats.record_ttft(spec, name, 0.05 + n / 1000)
            ctx.cluster.stats.record_generation(spec, name, 128, 1.5)
    for i in range(60):
        ctx.metrics.routed(names[i % models], specs[i % hosts], "adaptive", 0.0731)
    return ctx
