"""The one backend factory: `olol server --backend NAME` builds its engine from the agent's settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from olol.agent.config import AgentConfig
from olol.backends.factory import ENGINES, make_local_backend
from olol.backends.host_settings import HostSettings
from olol.backends.llamacpp.backend import LlamaCppBackend
from olol.backends.llamacpp.host import LlamaHostBackend
from olol.backends.ollama.backend import OllamaBackend
from olol.backends.ollama.serve import SupervisedOllamaBackend


async def test_ollama_engine_is_the_plain_adapter_or_the_supervised_one() -> None:
    plain = make_local_backend(AgentConfig(ollama_host="http://127.0.0.1:9", parallel=3))
    assert type(plain) is OllamaBackend
    supervised = make_local_backend(AgentConfig(ollama_host="http://127.0.0.1:9", ollama_serve=True,
                                                ollama_bin="/bin/ollama-x"))  # fmt: skip
    assert isinstance(supervised, SupervisedOllamaBackend)
    assert supervised.serve.binary == "/bin/ollama-x"


async def test_llamacpp_engine_attaches_to_a_url_or_supervises_a_model(tmp_path: Path) -> None:
    attached = make_local_backend(AgentConfig(backend="llamacpp", llama_url="http://127.0.0.1:9"))
    assert type(attached) is LlamaCppBackend
    model = tmp_path / "m.gguf"
    model.write_bytes(b"")
    settings = HostSettings(flash_attention=True)
    hosted = make_local_backend(AgentConfig(backend="llamacpp", model=str(model), threads=2, ctx_size=512,
                                            llama_args=["--mlock"], settings=settings))  # fmt: skip
    assert isinstance(hosted, LlamaHostBackend)
    template = hosted.template
    assert (template.model_path, template.threads, template.parallel, template.ctx_size) == (model, 2, 4, 512)
    assert template.extra_args == ("--mlock",) and template.flash_attention


def test_unknown_or_incomplete_engines_are_refused() -> None:
    with pytest.raises(ValueError, match="needs --llama-url URL, --model PATH or --models-dir DIR"):
        make_local_backend(AgentConfig(backend="llamacpp"))
    with pytest.raises(ValueError, match="unknown backend 'vllm' \\(choose ollama or llamacpp\\)"):
        make_local_backend(AgentConfig(backend="vllm"))
    assert list(ENGINES) == ["ollama", "llamacpp"]
