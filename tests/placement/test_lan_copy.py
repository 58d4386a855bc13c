"""LAN copies between two agents: no registry involved, sha256 checked end to end, original settings kept."""

from __future__ import annotations

import hashlib
from pathlib import Path

import aiohttp
import pytest

from olol.backends.ollama.backend import OllamaBackend
from olol.errors import OlolError
from olol.transfer.client import TransferClient
from tests.placement.models_dir import gguf_bytes, write_ollama_model
from tests.support.ollama_sim import ModelSpec

MODEL = "tiny-chat:latest"


@pytest.fixture
def source_dir(tmp_path: Path):  # type: ignore[no-untyped-def]
    return write_ollama_model(
        tmp_path / "src-models",
        MODEL,
        gguf_bytes(3 * 1024 * 1024 + 17),
        template="<|user|>{{ .Prompt }}<|eot|>",
        system="Answer in French.",
        parameters={"stop": ["<|eot|>"], "num_ctx": 4096},
    )


async def test_copy_between_two_agents_with_no_registry(
    agent_factory, ollama_sim_factory, source_dir, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    src_sim = await ollama_sim_factory(models=[ModelSpec(MODEL)], registry=[])
    dst_sim = await ollama_sim_factory(models=[], registry=[])  # the registry has nothing: a pull would fail
    src = await agent_factory(OllamaBackend(src_sim.url), ollama_models=str(tmp_path / "src-models"))
    dst = await agent_factory(
        OllamaBackend(dst_sim.url), ollama_models=str(tmp_path / "dst-models"), transfer_dir=str(tmp_path / "staging")
    )
    async with TransferClient(dst.target) as client:
        lines = [line async for line in client.fetch(src.target, MODEL)]
    statuses = [line["status"] for line in lines]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    layer = [line for line in lines if "digest" in line]
    assert layer[-1]["completed"] == layer[-1]["total"] == len(source_dir.weights)
    # Byte for byte what the source had, uploaded to the destination's Ollama, which hashed it again.
    assert dst_sim.blobs[source_dir.weights_digest] == source_dir.weights
    assert (
        hashlib.sha256(dst_sim.blobs[source_dir.weights_digest] or b"").hexdigest()
        == source_dir.weights_digest.split(":")[1]
    )
    assert dst_sim.requests["/api/pull"] == 0 and src_sim.requests["/api/pull"] == 0
    # Rebuilt with the original template, system prompt and parameters.
    async with aiohttp.ClientSession() as http, http.post(dst_sim.url + "/api/show", json={"model": MODEL}) as r:
        show = await r.json()
    assert show["template"] == source_dir.template and show["system"] == source_dir.system
    assert "num_ctx" in show["parameters"] and "<|eot|>" in show["parameters"]
    assert not list((tmp_path / "staging").glob("*.partial"))  # staged copy handed over and removed
    sent = src.handle.transfer
    assert sent is not None and sent.stats["bytes_sent"] == len(source_dir.weights)


async def test_a_second_copy_moves_no_bytes(agent_factory, ollama_sim_factory, source_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    src_sim = await ollama_sim_factory(models=[ModelSpec(MODEL)], registry=[])
    dst_sim = await ollama_sim_factory(models=[], registry=[])
    src = await agent_factory(OllamaBackend(src_sim.url), ollama_models=str(tmp_path / "src-models"))
    dst = await agent_factory(OllamaBackend(dst_sim.url), transfer_dir=str(tmp_path / "staging"))
    async with TransferClient(dst.target) as client:
        for _ in range(2):
            lines = [line async for line in client.fetch(src.target, MODEL)]
            assert lines[-1]["status"] == "success"
    service = src.handle.transfer
    assert service is not None and service.stats["bytes_sent"] == len(source_dir.weights)


async def test_unknown_model_and_store_less_source_are_clear_errors(
    agent_factory, ollama_sim_factory, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    src_sim = await ollama_sim_factory(models=[], registry=[])
    src = await agent_factory(OllamaBackend(src_sim.url), ollama_models=str(tmp_path / "empty"))
    dst = await agent_factory(OllamaBackend(src_sim.url), transfer_dir=str(tmp_path / "staging"))
    async with TransferClient(dst.target) as client:
        with pytest.raises(OlolError, match="not found"):
            [line async for line in client.fetch(src.target, "nothing:here")]
    async with TransferClient(src.target) as client:
        with pytest.raises(OlolError, match="invalid digest"):
            [c async for c in client.read_blob("../../etc/passwd")]


async def test_copy_resumes_after_the_receiving_agent_is_killed(ollama_sim_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    agent_fixtures = pytest.importorskip("tests.support.agent_fixtures")
    from tests.placement.agent_process import agent_process

    size = 12 * 1024 * 1024
    laid = write_ollama_model(tmp_path / "src-models", MODEL, gguf_bytes(size, seed=7))
    src_sim = await ollama_sim_factory(models=[ModelSpec(MODEL)], registry=[])
    dst_sim = await ollama_sim_factory(models=[], registry=[])
    # The source sends at 8 MB/s so the copy is still running when the receiver dies.
    src = await agent_fixtures.start_agent(
        "asyncio", OllamaBackend(src_sim.url), ollama_models=str(tmp_path / "src-models"), transfer_rate=8e6
    )
    staging = tmp_path / "staging"
    receiver = ["--ollama-host", dst_sim.url, "--transfer-dir", str(staging), "--async"]
    try:
        async with agent_process(*receiver) as dst, TransferClient(dst.target) as client:
            with pytest.raises(OlolError):
                async for line in client.fetch(src.target, MODEL):
                    if line.get("completed", 0) >= 3 * 1024 * 1024:
                        dst.kill()  # SIGKILL mid-copy
        partial = next(staging.glob("*.partial"))
        kept = partial.stat().st_size
        assert 0 < kept < size
        async with agent_process(*receiver) as dst, TransferClient(dst.target) as client:
            lines = [line async for line in client.fetch(src.target, MODEL)]
        assert lines[-1]["status"] == "success"
        assert next(line for line in lines if "digest" in line)["resumed_from"] == kept
        assert dst_sim.blobs[laid.weights_digest] == laid.weights  # sha256-verified by both agent and Ollama
        service = src.handle.transfer
        assert service is not None and service.stats["bytes_sent"] < size + (size - kept) + 2 * 1024 * 1024
        assert dst_sim.requests["/api/pull"] == 0
    finally:
        await src.client.close()
        await src.stop()


async def test_agents_call_each_other_with_the_cluster_token(ollama_sim_factory, source_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from olol.security.settings import SecuritySettings
    from olol.security.tokens import token_metadata
    from olol.wire.status import protocol_metadata
    from tests.support.agent_fixtures import start_agent

    secure = SecuritySettings(token="s3cret")
    src_sim = await ollama_sim_factory(models=[ModelSpec(MODEL)], registry=[])
    dst_sim = await ollama_sim_factory(models=[], registry=[])
    src = await start_agent(
        "asyncio", OllamaBackend(src_sim.url), ollama_models=str(tmp_path / "src-models"), security=secure
    )
    dst = await start_agent("threaded", OllamaBackend(dst_sim.url), transfer_dir=str(tmp_path / "t"), security=secure)
    try:
        async with TransferClient(dst.target) as anonymous:
            with pytest.raises(OlolError):
                await anonymous.capacity()
        metadata = (*protocol_metadata(), *token_metadata("s3cret"))
        async with TransferClient(dst.target, metadata=metadata) as client:
            lines = [line async for line in client.fetch(src.target, MODEL)]  # dst -> src carries the token too
        assert lines[-1]["status"] == "success"
        assert dst_sim.blobs[source_dir.weights_digest] == source_dir.weights
    finally:
        for agent in (src, dst):
            await agent.client.close()
            await agent.stop()
