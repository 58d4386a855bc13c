"""Weight pre-seeding: fill the worker's ggml tensor cache from a GGUF file this host already has.

How llama.cpp uses the cache (ggml-rpc.cpp, protocol 7.0.0): when the client
uploads a tensor of a *weights* buffer larger than 10 MiB, it first sends
SET_TENSOR_HASH with the 64-bit FNV-1a of the bytes; a worker started with `-c`
answers 1 if `<cache dir>/<16 hex digits of the hash>` exists and loads the
tensor from there, so the bytes never cross the network. Otherwise the client
sends SET_TENSOR with its cache flag set and the worker saves the bytes under
their hash. llama-server uploads each weight whole (`ggml_backend_tensor_set`
of the mmapped tensor data, offset 0), so the hash is the FNV-1a of exactly the
tensor's bytes in the GGUF file.

Seeding therefore replays what a first load would do, locally: OLOL uploads
every weight over 10 MiB from the local file to its own worker on loopback
with the cache flag, and the worker computes the hash and writes the file
itself, so the hash is llama.cpp's by construction. Smaller tensors (norms,
biases) are not cached by llama.cpp and still cross the network; they are a
tiny fraction of any real model. The token embedding stays on the
coordinator's CPU and is skipped unless the model ties the output layer to it.
An index beside the cache remembers which files were seeded (by path, size and
mtime) and the cache files they produced, so a restart does not seed again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import mmap
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from olol.backends.llamacpp.gguf_header import read_gguf_header
from olol.rpc.ggml_client import GGML_TYPE_I8, GgmlClient, RpcTensor
from olol.rpc.worker import GgmlWorker

__all__ = [
    "HASH_THRESHOLD",
    "SeedReport",
    "SeedTensor",
    "cached_tensors",
    "load_index",
    "preseed",
    "seed_cache",
    "seed_key",
]

log = logging.getLogger(__name__)

HASH_THRESHOLD = 10 * 1024 * 1024  # llama.cpp hashes weight uploads strictly larger than this
INDEX_NAME = "olol-seeded.json"


@dataclass(frozen=True)
class SeedTensor:
    name: str
    offset: int  # in the file
    size: int


@dataclass(frozen=True)
class SeedReport:
    path: Path
    tensors: int
    bytes: int
    skipped: bool  # already seeded (index and cache files present)


def cached_tensors(path: Path) -> list[SeedTensor]:
    """The tensors of a GGUF file that llama.cpp would look up in a worker's cache."""
    header = read_gguf_header(path)
    names = {t.name for t in header.tensors}
    tied = "output.weight" not in names
    out = []
    for t in header.tensors:
        if t.n_bytes <= HASH_THRESHOLD or (t.name == "token_embd.weight" and not tied):
            continue
        out.append(SeedTensor(t.name, header.data_offset + t.offset, t.n_bytes))
    return out


def seed_key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def load_index(cache_dir: Path) -> dict[str, list[str]]:
    try:
        data = json.loads((cache_dir / INDEX_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save_index(cache_dir: Path, index: dict[str, list[str]]) -> None:
    tmp = cache_dir / (INDEX_NAME + ".tmp")
    tmp.write_text(json.dumps(index, indent=1, sort_keys=True))
    os.replace(tmp, cache_dir / INDEX_NAME)


def already_seeded(path: Path, cache_dir: Path) -> bool:
    files = load_index(cache_dir).get(seed_key(path))
    return bool(files) and all((cache_dir / "rpc" / name).is_file() for name in files or ())


def seed_cache(
    path: Path,
    host: str,
    port: int,
    cache_dir: Path,
    *,
    timeout: float = 600.0,
    device: int = 0,
    connect: Callable[[float], socket.socket] | None = None,
) -> SeedReport:
    """Upload the cacheable weights of `path` to the worker at host:port with the cache flag.

    The worker must run with `-c` and `LLAMA_CACHE=cache_dir`, and no other
    client may hold it (see `preseed`). Raises GgmlError if the worker refuses. `connect(timeout)`
    opens the connection (an isolated worker's comes from `GgmlWorker.connect_blocking`).
    """
    if already_seeded(path, cache_dir):
        return SeedReport(path, 0, 0, skipped=True)
    tensors = [t for t in cached_tensors(path) if t.size < 1 << 32]  # rpc_tensor sizes are u32
    if not tensors:
        return SeedReport(path, 0, 0, skipped=False)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        view = memoryview(data)
        try:
            sock = connect(timeout) if connect is not None else None
            with GgmlClient(host, port, timeout=timeout, sock=sock) as client:
                client.hello()
                alignment = client.alignment(device)
                largest = max(t.size for t in tensors)
                buffer, _ = client.alloc_buffer(device, (largest + alignment - 1) // alignment * alignment)
                base = client.buffer_base(buffer)
                for t in tensors:
                    # An I8 vector over the bytes: the worker hashes bytes, whatever their type.
                    shape = RpcTensor(1, GGML_TYPE_I8, buffer, (t.size, 1, 1, 1), (1, t.size, t.size, t.size), base)
                    client.set_tensor(shape, view[t.offset : t.offset + t.size], cache=True)
                client.alignment(device)  # replies are in order: every upload is saved once this returns
                client.free_buffer(buffer)
        finally:
            view.release()
    total = sum(t.size for t in tensors)
    log.info("seeded %d tensors (%.1f MiB) of %s into %s", len(tensors), total / 2**20, path, cache_dir)
    return SeedReport(path, len(tensors), total, skipped=False)


async def preseed(worker: GgmlWorker, path: Path, *, log_wait: float = 2.0) -> SeedReport:
    """Seed the worker's cache from `path` while holding it, and index what it saved."""
    cache_dir = worker.config.cache_dir
    if cache_dir is None:
        raise ValueError("pre-seeding needs the worker's tensor cache (--cache)")
    async with worker.lock:
        worker.take_saved()  # forget older lines
        report = await asyncio.to_thread(
            seed_cache, path, worker.host, worker.port, cache_dir, connect=worker.connect_blocking
        )
        # The worker logs "saved to '<file>'" per tensor; its log is read on this loop, a moment later.
        files: list[str] = []
        deadline = time.monotonic() + log_wait
        while len(files) < report.tensors and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            files += worker.take_saved()
    if report.tensors and len(files) >= report.tensors:
        index = load_index(cache_dir)
        index[seed_key(path)] = sorted(set(files))
        _save_index(cache_dir, index)
    elif report.tensors:
        log.info("worker reported %d of %d cache files; %s is seeded again next time", len(files), report.tensors, path)
    return report
