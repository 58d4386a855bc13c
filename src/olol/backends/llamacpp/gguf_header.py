"""OLOL's one GGUF reader: metadata key/values and tensor infos with their sizes and file offsets.

`gguf.GGUFReader` builds a numpy view per array item, which takes seconds for a
32k-token vocabulary (and far longer for 150k-token ones), on every call. Agents
read headers on startup, on `/api/show` and for placement planning, and rpc-servers
to preseed their tensor cache, so this reader walks the header with `struct` and
skips arrays nobody asked for; the `gguf` package supplies the enums and block sizes.
Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md (v2 and v3).
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf import GGUFValueType as ValueType

__all__ = ["GGUFHeader", "TensorInfo", "ValueType", "read_gguf_header"]

_DEFAULT_ALIGNMENT = 32  # of the tensor data section, unless `general.alignment` says otherwise

_SCALARS = {
    ValueType.UINT8: "B",
    ValueType.INT8: "b",
    ValueType.UINT16: "H",
    ValueType.INT16: "h",
    ValueType.UINT32: "I",
    ValueType.INT32: "i",
    ValueType.FLOAT32: "f",
    ValueType.BOOL: "?",
    ValueType.UINT64: "Q",
    ValueType.INT64: "q",
    ValueType.FLOAT64: "d",
}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # ggml `ne` order (fastest-varying dimension first)
    type: int  # ggml type id (gguf.GGMLQuantizationType)
    offset: int  # from the start of the tensor data section (`GGUFHeader.data_offset`)

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def n_bytes(self) -> int:
        """Its size in the file (and in memory, as loaded)."""
        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(self.type)]
        return self.n_elements // block * type_size


@dataclass(frozen=True)
class GGUFHeader:
    version: int
    fields: dict[str, Any]  # arrays are None unless read with arrays=True
    types: dict[str, tuple[ValueType, ValueType | None]]  # (type, array item type)
    tensors: list[TensorInfo]
    data_offset: int  # where tensor data starts in the file: a tensor's bytes are at data_offset + its offset


class _Cursor:
    def __init__(self, buf: Any) -> None:
        self.buf = buf
        self.pos = 0

    def unpack(self, fmt: str) -> Any:
        value = struct.unpack_from("<" + fmt, self.buf, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        n = self.unpack("Q")
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return raw.decode("utf-8", "replace")

    def skip_string(self) -> None:
        self.pos += 8 + struct.unpack_from("<Q", self.buf, self.pos)[0]

    def value(self, vtype: ValueType, keep_arrays: bool) -> tuple[Any, ValueType | None]:
        if vtype == ValueType.STRING:
            return self.string(), None
        if vtype != ValueType.ARRAY:
            return self.unpack(_SCALARS[vtype]), None
        item = ValueType(self.unpack("I"))
        count = self.unpack("Q")
        if item in _SCALARS:
            fmt = f"<{count}{_SCALARS[item]}"
            values = list(struct.unpack_from(fmt, self.buf, self.pos)) if keep_arrays else None
            self.pos += struct.calcsize(fmt)
            return values, item
        if item == ValueType.STRING:
            if keep_arrays:
                return [self.string() for _ in range(count)], item
            for _ in range(count):
                self.skip_string()
            return None, item
        # Nested arrays are legal GGUF but no model uses them; read them generically.
        nested = [self.value(item, keep_arrays)[0] for _ in range(count)]
        return (nested if keep_arrays else None), item


def read_gguf_header(path: str | os.PathLike[str], *, arrays: bool = False) -> GGUFHeader:
    """Parse the header of a GGUF file; raises ValueError if it is not one."""
    with open(Path(path), "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        cur = _Cursor(buf)
        try:
            if bytes(buf[:4]) != b"GGUF":
                raise ValueError(f"{path} is not a GGUF file")
            cur.pos = 4
            version = cur.unpack("I")
            if version not in (2, 3):
                raise ValueError(f"{path}: unsupported GGUF version {version}")
            n_tensors, n_kv = cur.unpack("Q"), cur.unpack("Q")
            fields: dict[str, Any] = {}
            types: dict[str, tuple[ValueType, ValueType | None]] = {}
            for _ in range(n_kv):
                key = cur.string()
                vtype = ValueType(cur.unpack("I"))
                fields[key], item = cur.value(vtype, arrays)
                types[key] = (vtype, item)
            tensors = []
            for _ in range(n_tensors):
                name = cur.string()
                shape = tuple(cur.unpack("Q") for _ in range(cur.unpack("I")))
                tensors.append(TensorInfo(name, shape, cur.unpack("I"), cur.unpack("Q")))
        except (struct.error, IndexError) as exc:
            raise ValueError(f"{path}: truncated or corrupt GGUF header") from exc
        align = int(fields.get("general.alignment") or _DEFAULT_ALIGNMENT)
        data_offset = -(-cur.pos // align) * align
    return GGUFHeader(version, fields, types, tensors, data_offset)
