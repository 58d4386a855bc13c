"""The proxy's split models without llama.cpp: settings, the fit check, which requests are split, ranking."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from olol.backends.llamacpp.backend import LlamaCppBackend
from olol.cli import proxy as proxy_cmd
from olol.cluster import Cluster, Host
from olol.proxy.config import ProxyConfig
from olol.proxy.distributed import _PINNED, DistributedModels, SplitModelsLast, split_models_last
from olol.proxy.policies import Candidate, RoundRobin
from olol.split.fit import ModelNeed, can_hold, free_memory
from olol.split.model_source import ModelSourceError, resolve_ollama_name
from olol.split.settings import DistributedSettings, parse_model_specs

GIB = 1 << 30


def host(host_id: str, *, models: tuple[str, ...] = (), ram_free: int | None = None, vram_free: int | None = None,
         loaded: tuple[str, ...] = ()) -> Host:  # fmt: skip
    h = Host(id=host_id, backend=LlamaCppBackend(url="http://127.0.0.1:9"), healthy=True)
    h.set_models([{"name": m} for m in models])
    h.set_running([{"name": m} for m in loaded])
    h.ram_free = ram_free
    if vram_free is not None:
        h.hardware["vram_free"] = vram_free
    return h


NEED = ModelNeed(Path("big.gguf"), file_bytes=40 * GIB, kv_bytes=GIB, n_ctx=2048)


# ---------------------------------------------------------------------- settings


def test_settings_need_well_formed_models() -> None:
    with pytest.raises(ValueError, match="NAME=PATH"):
        DistributedSettings(enabled=True, rpc_servers=["a:1"], models=["big="])
    assert parse_model_specs(["big=/m/big.gguf", "llama3:70b"]) == {"big": "/m/big.gguf", "llama3:70b": None}


def test_cli_refuses_distributed_without_rpc_servers(tmp_path: Path) -> None:
    cli = typer.Typer()
    proxy_cmd.register(cli)

    @cli.callback()
    def _group() -> None:
        pass

    (tmp_path / "empty.toml").write_text("")
    result = CliRunner().invoke(cli, ["proxy", "--distributed", "--config", str(tmp_path / "empty.toml")])
    assert result.exit_code != 0
    assert "rpc-servers" in result.output


# ---------------------------------------------------------------------- model source


def _ollama_dir(root: Path, name: str, tag: str, blob: bytes) -> Path:
    digest = "ab" * 32
    (root / "blobs").mkdir(parents=True)
    (root / "blobs" / f"sha256-{digest}").write_bytes(blob)
    manifest = root / "manifests" / "registry.ollama.ai" / "library" / name / tag
    manifest.parent.mkdir(parents=True)
    layers = [{"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}"}]
    manifest.write_text(json.dumps({"layers": layers}))
    return root / "blobs" / f"sha256-{digest}"


def test_request_names_reach_ollama_models_never_paths(tmp_path: Path) -> None:
    blob = _ollama_dir(tmp_path / "models", "big", "latest", b"GGUF")
    assert resolve_ollama_name("big", tmp_path / "models") == blob
    (tmp_path / "secret.gguf").write_bytes(b"GGUF")
    for name in (str(tmp_path / "secret.gguf"), "~/x", "../../secret", "library/../../x:latest"):
        with pytest.raises(ModelSourceError):
            resolve_ollama_name(name, tmp_path / "models")


# ---------------------------------------------------------------------- fit


def test_free_memory_is_ram_plus_vram_and_unknown_when_never_reported() -> None:
    assert free_memory(host("a", ram_free=8 * GIB, vram_free=24 * GIB)) == 32 * GIB
    assert free_memory(host("b", ram_free=8 * GIB)) == 8 * GIB
    assert free_memory(host("c")) is None


def test_a_holder_that_loaded_the_model_or_never_reported_memory_can_hold_it() -> None:
    # Already loaded, or memory never reported: the host is trusted with what it lists.
    assert can_hold(host("busy", models=("big",), ram_free=GIB, loaded=("big",)), "big", NEED)
    assert can_hold(host("ollama", models=("big",)), "big", NEED)


def test_model_need_is_file_size_plus_kv_cache(tiny_model: Path) -> None:
    short, long = ModelNeed.of(tiny_model, 512), ModelNeed.of(tiny_model, 1024)
    assert short.file_bytes == tiny_model.stat().st_size
    assert long.kv_bytes == 2 * short.kv_bytes > 0
    assert long.total == long.file_bytes + long.kv_bytes


# ---------------------------------------------------------------------- which requests are split


def _service(cluster: Cluster, tmp_path: Path, **settings: Any) -> DistributedModels:
    dist = DistributedSettings(enabled=True, rpc_servers=["w1:50052"], **settings)
    ctx: Any = SimpleNamespace(config=ProxyConfig(distributed=dist), cluster=cluster)
    return DistributedModels(ctx)


class _Launched(Exception):
    pass


async def test_which_requests_go_split(tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = Cluster([host("small", models=("tiny",), ram_free=1 << 20)])
    service = _service(cluster, tmp_path, models=[f"tiny={tiny_model}"])
    asked: list[str] = []

    async def ensure(model: str) -> Host:
        asked.append(model)
        return cluster.hosts["small"]

    monkeypatch.setattr(service, "ensure", ensure)
    headers: dict[str, str] = {}
    # 1 MiB free is too little for the tiny model (38 MB): split without being asked.
    assert await service.host_for({"model": "tiny", "prompt": "hi"}, headers) is not None
    # Asked not to: routed as usual. An unload never starts a split.
    assert await service.host_for({"model": "tiny", "options": {"distributed": False}}, headers) is None
    assert await service.host_for({"model": "tiny", "keep_alive": 0}, headers) is None
    # With room for it, only an explicit request (option or header) splits it.
    cluster.hosts["small"].ram_free = 1 << 40
    assert await service.host_for({"model": "tiny", "prompt": "hi"}, headers) is None
    assert await service.host_for({"model": "tiny", "options": {"distributed": True}}, headers) is not None
    assert await service.host_for({"model": "tiny"}, {"X-OLOL-Distributed": "true"}) is not None
    # A model with no GGUF here is never split automatically.
    assert await service.host_for({"model": "elsewhere", "prompt": "hi"}, headers) is None
    assert asked == ["tiny", "tiny", "tiny"]


def test_splits_use_configured_rpc_servers_first_then_discovered_ones(tmp_path: Path) -> None:
    found = ["10.0.0.9:50052", "w1:50052"]
    ctx: Any = SimpleNamespace(config=ProxyConfig(distributed=DistributedSettings(
        enabled=True, rpc_servers=["w2:50052", "w1"])), cluster=Cluster())  # fmt: skip
    service = DistributedModels(ctx, lambda: found)
    assert service.servers == ["w2:50052", "w1:50052", "10.0.0.9:50052"]
    ctx.config.distributed.discovered = False
    assert service.servers == ["w2:50052", "w1:50052"]


async def test_without_rpc_servers_a_split_is_refused_clearly(tiny_model: Path) -> None:
    ctx: Any = SimpleNamespace(config=ProxyConfig(distributed=DistributedSettings(
        enabled=True, models=[f"tiny={tiny_model}"])), cluster=Cluster())  # fmt: skip
    with pytest.raises(Exception, match="no rpc-server is configured") as caught:
        await DistributedModels(ctx, list).ensure("tiny")
    assert getattr(caught.value, "status", None) == 503


async def test_a_name_without_a_gguf_cannot_be_split(tmp_path: Path) -> None:
    service = _service(Cluster(), tmp_path, models_dir=str(tmp_path))
    with pytest.raises(Exception, match="not found for a split") as caught:
        await service.ensure("nowhere")
    assert getattr(caught.value, "status", None) == 404


# ---------------------------------------------------------------------- ranking


def test_split_hosts_rank_last_unless_the_request_is_pinned_to_one() -> None:
    single, split = host("single", models=("m",)), host("dist:m:latest", models=("m",))
    policy = SplitModelsLast(RoundRobin(), lambda: {"dist:m:latest"})
    candidates = [Candidate(split, "m"), Candidate(single, "m")]
    for _ in range(3):  # whatever the round-robin turn
        assert [c.host.id for c in policy.rank(candidates)] == ["single", "dist:m:latest"]
    token = _PINNED.set("dist:m:latest")
    try:
        assert [c.host.id for c in policy.rank(candidates)] == ["dist:m:latest"]
    finally:
        _PINNED.reset(token)
    assert policy.name == RoundRobin.name


def test_a_prefix_aware_policy_stays_prefix_aware_with_split_models_last() -> None:
    """Split models on, `cache_aware` (the default) still routes prompts to their cache, never to a split host
    unless pinned there or the others are full."""
    from olol.cluster import CacheBook, LatencyBook
    from olol.proxy.affinity import prefix_text
    from olol.proxy.policies import CacheAware, PrefixPolicy

    book = CacheBook()
    warm, cold = host("warm", models=("m",)), host("cold", models=("m",))
    split = host("dist:m:latest", models=("m",))
    text = prefix_text({"messages": [{"role": "system", "content": "You are the billing agent. " * 40}]}) or b""
    book.record(warm, "m", text)
    book.record(split, "m", text)
    policy = split_models_last(CacheAware(LatencyBook(), book), lambda: {"dist:m:latest"})
    assert isinstance(policy, PrefixPolicy) and not isinstance(split_models_last(RoundRobin(), set), PrefixPolicy)
    candidates = [Candidate(split, "m"), Candidate(cold, "m"), Candidate(warm, "m")]
    choice, reason = policy.route(candidates, text + b"more") or (None, "")
    assert choice is not None and choice.host is warm and reason.startswith("cache:")
    book.begin("warm", text + b"running", expected_s=0.0)
    assert policy.patience(candidates, text + b"more", {}) is not None  # held for warm, the split host ignored
    token = _PINNED.set("dist:m:latest")
    try:
        pinned = policy.route(candidates, text + b"more")
        assert pinned is not None and pinned[0].host is split and policy.patience(candidates, text, {}) is None
    finally:
        _PINNED.reset(token)
