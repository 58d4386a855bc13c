"""What a model needs per layer, read from its GGUF header: the planner's input.

Sizes come from the tensor infos (shape x type size), never from the file name
or the parameter count. The header is read with OLOL's own header walker
(`olol.backends.llamacpp.gguf_header`), which skips the vocabulary arrays that make
`gguf.GGUFReader` take seconds; the `gguf` package supplies the block sizes of
every ggml type.

What goes where in llama.cpp with `-ngl` covering every layer: each block
`blk.N.*` and its KV cache on the device that holds layer N; the output layer
(`output.weight`, or `token_embd.weight` again when the model ties them, plus
`output_norm.weight`) on the last device; the token embedding stays on the
coordinator's CPU and is not planned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from olol.backends.llamacpp.gguf_header import read_gguf_header

__all__ = ["KV_TYPE_BYTES", "ModelProfile"]

_BLOCK = re.compile(r"^blk\.(\d+)\.")

# Bytes per element of the KV cache types llama.cpp offers (--cache-type-k/v): block bytes / block size.
KV_TYPE_BYTES: dict[str, float] = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q5_1": 24 / 32,
                                   "q5_0": 22 / 32, "q4_1": 20 / 32, "q4_0": 18 / 32, "iq4_nl": 18 / 32}  # fmt: skip


def _per_layer(value: Any, n: int, what: str) -> list[int]:
    if isinstance(value, list):
        if len(value) != n:
            raise ValueError(f"{what} has {len(value)} entries for {n} layers")
        return [int(v) for v in value]
    return [int(value)] * n


@dataclass(frozen=True)
class ModelProfile:
    path: Path
    architecture: str
    n_layers: int
    layer_bytes: tuple[int, ...]  # weights of each block
    output_bytes: int  # the output layer: output norm + output matrix
    kv_bytes_per_layer: tuple[int, ...]  # for n_ctx tokens of context
    embedding_bytes: int  # stays on the coordinator
    n_ctx: int
    kv_type: str

    @property
    def weight_bytes(self) -> int:
        """Weights the workers hold: every block and the output layer."""
        return sum(self.layer_bytes) + self.output_bytes

    @property
    def kv_bytes(self) -> int:
        return sum(self.kv_bytes_per_layer)

    @classmethod
    def from_gguf(cls, path: str | Path, *, n_ctx: int, kv_type: str = "f16") -> ModelProfile:
        """Read `path`; `n_ctx` is the total context llama-server allocates (its -c)."""
        path = Path(path)
        if kv_type not in KV_TYPE_BYTES:
            raise ValueError(f"unknown KV cache type {kv_type!r}; one of {', '.join(KV_TYPE_BYTES)}")
        header = read_gguf_header(path)
        arch = str(header.fields.get("general.architecture", ""))
        if any(header.fields.get(f"{arch}.attention.{k}", 0) is None for k in ("head_count", "head_count_kv")):
            header = read_gguf_header(path, arrays=True)  # per-layer head counts: read arrays too (slower)
        fields = header.fields
        if not arch:
            raise ValueError(f"{path}: no general.architecture; is it a model?")

        def key(name: str, default: Any = None) -> Any:
            value = fields.get(f"{arch}.{name}", default)
            if value is None:
                raise ValueError(f"{path}: missing {arch}.{name}")
            return value

        n_layers = int(key("block_count"))
        layers = [0] * n_layers
        sizes: dict[str, int] = {}
        for t in header.tensors:
            size = t.n_bytes
            sizes[t.name] = size
            if m := _BLOCK.match(t.name):
                index = int(m[1])
                if index >= n_layers:
                    raise ValueError(f"{path}: tensor {t.name} beyond block_count {n_layers}")
                layers[index] += size
        embedding = sizes.get("token_embd.weight", 0)
        output = sizes.get("output.weight", embedding) + sizes.get("output_norm.weight", 0)
        return cls(
            path=path,
            architecture=arch,
            n_layers=n_layers,
            layer_bytes=tuple(layers),
            output_bytes=output,
            kv_bytes_per_layer=tuple(_kv_per_layer(key, n_layers, n_ctx, KV_TYPE_BYTES[kv_type])),
            embedding_bytes=embedding,
            n_ctx=n_ctx,
            kv_type=kv_type,
        )


def _kv_per_layer(key: Any, n_layers: int, n_ctx: int, elem_bytes: float) -> list[int]:
    """n_ctx x (n_embd_k_gqa + n_embd_v_gqa) x bytes per element, per layer (llama.cpp's KV cache)."""
    n_embd = int(key("embedding_length"))
    heads = _per_layer(key("attention.head_count"), n_layers, "head_count")
    kv_heads = _per_layer(key("attention.head_count_kv", heads), n_layers, "head_count_kv")
    out = []
    for head, kv_head in zip(heads, kv_heads, strict=True):
        k_len = int(key("attention.key_length", n_embd // head if head else 0))
        v_len = int(key("attention.value_length", k_len))
        out.append(int(n_ctx * (k_len + v_len) * kv_head * elem_bytes))
    return out
