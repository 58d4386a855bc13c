"""Hot paths, each in two interchangeable implementations.

Every hot path NAME has a compiled module `olol._fast.NAME_c` (built from
`NAME_c.pyx`, optional: a missing compiler only makes OLOL slower) and a
pure-Python twin `olol._fast._NAME_py` with the same public API and behaviour.
Callers import the facade `olol._fast.NAME`, which picks one at import time via
`load`. Keeping both lets the tests run every case against each and the
benchmarks measure what the compiled code buys.

Set `OLOL_PURE_PYTHON=1` to force the twins (e.g. to rule out a miscompiled
extension); `active()` reports what is in use, for `olol version`.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

__all__ = ["NAMES", "PURE_PYTHON_ENV", "active", "compiled", "load", "pure"]

NAMES: tuple[str, ...] = ("quant", "framing", "binpack", "prefix", "longstr")
PURE_PYTHON_ENV = "OLOL_PURE_PYTHON"


def _check(name: str) -> None:
    if name not in NAMES:
        raise ValueError(f"unknown hot path {name!r}; expected one of {', '.join(NAMES)}")


def pure(name: str) -> ModuleType:
    """The pure-Python twin of hot path `name` (always available)."""
    _check(name)
    return importlib.import_module(f"olol._fast._{name}_py")


def compiled(name: str) -> ModuleType | None:
    """The compiled extension of hot path `name`, or None when it was not built."""
    _check(name)
    try:
        return importlib.import_module(f"olol._fast.{name}_c")
    except ImportError:
        return None


def _pure_forced() -> bool:
    # "0" and "" mean unset, so `OLOL_PURE_PYTHON=0` in a shell profile does not surprise anyone.
    return os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0")


def load(name: str) -> ModuleType:
    """The implementation callers should use: compiled if built and not disabled, else the twin."""
    _check(name)
    if not _pure_forced():
        module = compiled(name)
        if module is not None:
            return module
    return pure(name)


def active() -> dict[str, bool]:
    """For each hot path, whether `load` picks the compiled extension."""
    return {name: load(name).__name__.endswith("_c") for name in NAMES}
