"""`olol status` rendering: what an operator reads from /api/status."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from olol.cli.status import render_status


def rendered(status: dict[str, Any]) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(render_status(status))
    return console.export_text()


HOST = {
    "id": "gpu1:50051",
    "kind": "ollama",
    "healthy": True,
    "in_flight": 1,
    "capacity": 4,
    "models": ["llama3.2:latest"],
    "loaded": ["llama3.2:latest"],
    "latency": {"llama3.2:latest": {"ttft_s": 0.0123, "tokens_per_s": 87.4}},
}


def test_hosts_sessions_and_queues() -> None:
    text = rendered({
        "balancer": "adaptive",
        "hosts": [HOST, {**HOST, "id": "gpu2:50051", "healthy": False, "latency": {}}],
        "sessions": {"sessions": 3, "hit_rate": 0.75},
        "queues": {"llama3.2:latest": {"depth": 2}},
        "uptime_s": 42,
    })
    assert "OLOL cluster (adaptive routing)" in text
    gpu1 = next(line for line in text.splitlines() if "gpu1:50051" in line)
    assert "up" in gpu1 and "1/4" in gpu1 and "12.3" in gpu1 and "87" in gpu1
    assert "down" in next(line for line in text.splitlines() if "gpu2:50051" in line)
    assert "sessions: 3  affinity hit rate: 75%  queued: 2  uptime: 42s" in text
    assert "rpc-servers" not in text  # no split-model line on a cluster without rpc-servers


def test_split_model_and_rpc_servers() -> None:
    text = rendered({
        "hosts": [],
        "rpc_servers": ["10.0.0.5:50052"],
        "distributed": {"rpc_servers": ["w1:50052", "w2:50052"], "active": {"model": "big", "host": "dist:big"}},
    })
    assert "split model: big on dist:big  rpc-servers: w1:50052, w2:50052" in text
    # Discovered rpc-servers alone (no --distributed) are listed too.
    alone = rendered({"hosts": [], "rpc_servers": ["10.0.0.5:50052"]})
    assert "split model: none  rpc-servers: 10.0.0.5:50052" in alone


def test_each_hosts_settings_in_force() -> None:
    settings = {"flash_attention": "true", "kv_cache_type": "q8_0", "context_window": "8192", "keep_alive": "1h",
                "load_timeout": "300", "numa": "false", "memory_lock": "true", "max_memory": str(12 * 10**9)}
    text = rendered({"hosts": [{**HOST, "hardware": {"settings": settings}}]})
    line = next(line for line in text.splitlines() if line.startswith("gpu1:50051:"))
    assert "flash attention on" in line and "kv cache q8_0" in line and "context 8192" in line
    assert "keep_alive 1h" in line and "mlock" in line and "max memory 12.0 GB" in line and "numa" not in line
