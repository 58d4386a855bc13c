from __future__ import annotations

import pytest

from olol.backends.ollama.backend import OllamaBackend
from olol.proxy import DEFAULT_POLICY, ProxyConfig, make_backend


def test_defaults() -> None:
    cfg = ProxyConfig()
    assert cfg.port == 8000 and cfg.balancer == DEFAULT_POLICY == "cache_aware"
    assert cfg.quant_fallback and cfg.affinity and cfg.replicas is None


def test_ollama_url_makes_an_ollama_backend() -> None:
    backend = make_backend("http://h:11434", parallel=3)
    assert isinstance(backend, OllamaBackend) and backend.url == "http://h:11434"


def test_agent_address_makes_an_agent_backend() -> None:
    pytest.importorskip("olol.backends.agent")
    backend = make_backend("h:50051")
    assert backend.kind != "ollama" and type(backend).__name__ == "AgentBackend"
