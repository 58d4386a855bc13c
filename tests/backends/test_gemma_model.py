"""The real small model of the demo and the benchmarks: fetched, verified, served, and it writes English."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from olol.backends.llamacpp.backend import LlamaCppBackend
from olol.backends.llamacpp.bins import LlamaBinaries
from olol.backends.llamacpp.gemma_model import SHA256, SIZE, cached_gemma

pytestmark = pytest.mark.slow


def test_fetched_once_into_the_cache_with_its_digest(gemma_model: Path) -> None:
    import hashlib

    assert cached_gemma() == gemma_model and gemma_model.stat().st_size == SIZE
    digest = hashlib.sha256()
    with gemma_model.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    assert digest.hexdigest() == SHA256


async def test_generates_english_and_chats_with_the_builtin_template(gemma_model: Path,
                                                                     llama_bins: LlamaBinaries) -> None:
    backend = LlamaCppBackend(model_path=gemma_model, model_name="gemma3-270m", ctx_size=512, threads=1,
                              parallel=1, embeddings=False, server_bin=llama_bins.llama_server)
    try:
        options = {"temperature": 0, "seed": 1, "num_predict": 12}
        chunks = [c async for c in backend.generate({"model": "gemma3-270m", "prompt": "The capital of France is",
                                                     "raw": True, "options": options})]
        assert "France" in "".join(c["response"] for c in chunks) or "Paris" in "".join(
            c["response"] for c in chunks)
        assert backend.process is not None and backend.process.config.chat_template == "gemma"
        # A GGUF without a chat template has Ollama's `{{ .Prompt }}`: a plain generate is the same completion as
        # a raw one (the built-in template llama-server got for chat must not wrap it: that made the model echo).
        plain = [c async for c in backend.generate({"model": "gemma3-270m", "prompt": "The capital of France is",
                                                    "options": options})]
        assert "".join(c["response"] for c in plain) == "".join(c["response"] for c in chunks)
        reply = [c async for c in backend.chat({"model": "gemma3-270m", "options": options,
                                                "messages": [{"role": "user", "content": "Say hello."}]})]
        assert reply[-1]["done"] and reply[-1]["eval_count"] > 0
    finally:
        with contextlib.suppress(Exception):
            await backend.close()
