"""Does a model fit on one host? GGUF size plus KV cache against the memory the host reports free.

This is what decides auto-distribution in the proxy: a model is split across
rpc-servers when no host that has it can hold it. The size is computed from the
file (every tensor, as loaded) and its header (KV cache for the context), never
guessed from the name. A host that never reported its free memory (a plain
Ollama server) cannot be judged, so it is trusted to serve what it lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from olol.cluster import Host
from olol.split.profile import ModelProfile

__all__ = ["ModelNeed", "can_hold", "free_memory"]


@dataclass(frozen=True)
class ModelNeed:
    path: Path
    file_bytes: int  # the weights as loaded: llama.cpp maps the file's tensors one to one
    kv_bytes: int  # f16 KV cache for n_ctx tokens
    n_ctx: int

    @property
    def total(self) -> int:
        return self.file_bytes + self.kv_bytes

    @classmethod
    def of(cls, path: str | Path, n_ctx: int) -> ModelNeed:
        path = Path(path)
        profile = ModelProfile.from_gguf(path, n_ctx=n_ctx)
        return cls(path, path.stat().st_size, profile.kv_bytes, n_ctx)


def free_memory(host: Host) -> int | None:
    """RAM plus VRAM free as the host last reported them (Ollama offloads what VRAM cannot hold to RAM);
    None when it never said."""
    vram = host.hardware.get("vram_free")
    vram_free = vram if isinstance(vram, int) and not isinstance(vram, bool) else None
    if host.ram_free is None and vram_free is None:
        return None
    return (host.ram_free or 0) + (vram_free or 0)


def can_hold(host: Host, model: str, need: ModelNeed) -> bool:
    if host.is_loaded(model):
        return True  # already in its memory
    free = free_memory(host)
    return free is None or free >= need.total
