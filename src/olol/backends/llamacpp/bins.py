"""Find `llama-server` and `ggml-rpc-server`, or build them from a source checkout.

Lookup order for each binary (first hit wins):

1. an explicit path given by the caller (a file, or a directory holding it);
2. the environment: `OLOL_LLAMA_SERVER` / `OLOL_RPC_SERVER`;
3. `PATH`;
4. the build cache written by `scripts/build-llama-cpp.sh`:
   `$OLOL_LLAMA_CACHE` (default `$XDG_CACHE_HOME/olol/llama.cpp` or
   `~/.cache/olol/llama.cpp`) `/<version>/bin`, the pinned version first.

The pinned version matters beyond taste: the ggml RPC protocol is versioned and
OLOL's RPC probes speak the one this llama.cpp ships.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PINNED_VERSION",
    "LlamaBinaries",
    "LlamaBinaryNotFound",
    "build_script",
    "cached_version_dirs",
    "ensure_built",
    "find_llama_server",
    "find_rpc_server",
    "llama_cache_root",
]

log = logging.getLogger(__name__)

PINNED_VERSION = "0.3.36"  # llama-cpp-python sdist whose vendored llama.cpp we build

_LLAMA_SERVER_NAMES = ("llama-server",)
# Older llama.cpp trees named the RPC worker `rpc-server`.
_RPC_SERVER_NAMES = ("ggml-rpc-server", "rpc-server")


class LlamaBinaryNotFound(FileNotFoundError):
    """A llama.cpp binary is missing; the message says how to get it."""


@dataclass(frozen=True)
class LlamaBinaries:
    llama_server: Path
    rpc_server: Path

    @property
    def bin_dir(self) -> Path:
        return self.llama_server.parent


def llama_cache_root() -> Path:
    """Root of the llama.cpp build cache (the same rule as the build script)."""
    explicit = os.environ.get("OLOL_LLAMA_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "olol" / "llama.cpp"


def build_script() -> Path | None:
    """`scripts/build-llama-cpp.sh` when running from a source checkout, else None."""
    # src/olol/backends/llamacpp/bins.py -> the repository root is two levels above `olol/`.
    script = Path(__file__).resolve().parents[4] / "scripts" / "build-llama-cpp.sh"
    return script if script.is_file() else None


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name))


def cached_version_dirs() -> list[Path]:
    """Version directories under the cache root, the pinned one first, then newest first."""
    root = llama_cache_root()
    if not root.is_dir():
        return []
    dirs = sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: _version_key(d.name), reverse=True)
    return sorted(dirs, key=lambda d: d.name != PINNED_VERSION)  # stable: keeps newest-first otherwise


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _candidates(explicit: str | os.PathLike[str] | None, env_var: str, names: tuple[str, ...]) -> Iterator[Path]:
    if explicit is not None:
        path = Path(explicit).expanduser()
        if path.is_dir():
            yield from (path / name for name in names)
        else:
            yield path
        return  # an explicit choice must not silently fall back to something else
    from_env = os.environ.get(env_var)
    if from_env:
        yield Path(from_env).expanduser()
        return
    for name in names:
        found = shutil.which(name)
        if found:
            yield Path(found)
    for version_dir in cached_version_dirs():
        yield from (version_dir / "bin" / name for name in names)


def _missing_message(what: str, env_var: str, explicit: str | os.PathLike[str] | None) -> str:
    if explicit is not None:
        return f"{what} not found at {explicit}"
    if os.environ.get(env_var):
        return f"{what} not found at ${env_var}={os.environ[env_var]}"
    script = build_script()
    how = f"run {script}" if script else "build llama.cpp (see scripts/build-llama-cpp.sh in the OLOL source)"
    return (
        f"{what} not found on PATH, in ${env_var}, or under {llama_cache_root()}/*/bin; "
        f"{how} (it caches the binaries there), or set ${env_var}"
    )


def _find(explicit: str | os.PathLike[str] | None, env_var: str, names: tuple[str, ...]) -> Path:
    for candidate in _candidates(explicit, env_var, names):
        if _is_executable(candidate):
            return candidate.resolve()
    raise LlamaBinaryNotFound(_missing_message(names[0], env_var, explicit))


def find_llama_server(explicit: str | os.PathLike[str] | None = None) -> Path:
    return _find(explicit, "OLOL_LLAMA_SERVER", _LLAMA_SERVER_NAMES)


def find_rpc_server(explicit: str | os.PathLike[str] | None = None) -> Path:
    return _find(explicit, "OLOL_RPC_SERVER", _RPC_SERVER_NAMES)


def _find_both() -> LlamaBinaries:
    return LlamaBinaries(find_llama_server(), find_rpc_server())


def ensure_built(*, build: bool = True, timeout: float | None = 3600.0) -> LlamaBinaries:
    """Return both binaries, running the build script first when they are missing.

    Building happens only from a source checkout (the script is not installed with
    the package). A file lock in the cache root makes concurrent callers (parallel
    test workers, two agents on one host) wait for one build instead of each
    compiling llama.cpp on the same few cores.
    """
    try:
        return _find_both()
    except LlamaBinaryNotFound:
        script = build_script()
        if not build or script is None:
            raise
    root = llama_cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _find_both()  # another process may have finished the build meanwhile
        except LlamaBinaryNotFound:
            pass
        done = subprocess.run(
            ["bash", str(script)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.splitlines()[-20:])
        raise LlamaBinaryNotFound(f"{script} failed with exit code {done.returncode}:\n{tail}")
    bin_dir = Path(done.stdout.strip().splitlines()[-1])
    log.info("llama.cpp binaries built in %s", bin_dir)
    return LlamaBinaries(find_llama_server(bin_dir), find_rpc_server(bin_dir))
