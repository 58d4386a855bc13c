"""Build steps pyproject.toml cannot express: protobuf code and the Cython hot paths.

* `protos/olol.proto` is compiled into `src/olol/_proto/` on every build, so the
  generated code always matches the schema in the tree (it is never committed).
* Each `src/olol/_fast/<name>_c.pyx` becomes the extension `olol._fast.<name>_c`.
  A failed or absent compiler is not fatal: every extension has a pure-Python
  twin (`olol._fast._<name>_py`), the facade `olol._fast.<name>` picks one, and
  the package works, slower, without the compiled ones.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "src"))

from olol._proto_build import generate  # noqa: E402

generate(ROOT / "protos", ROOT / "src" / "olol" / "_proto")


class OptionalBuildExt(build_ext):
    """Build what compiles; warn about the rest instead of failing the install."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # pragma: no cover - depends on the toolchain
            print(f"warning: fast extensions not built ({exc}); using pure-Python twins")

    def build_extension(self, ext: object) -> None:
        try:
            super().build_extension(ext)  # type: ignore[arg-type]
        except Exception as exc:  # pragma: no cover
            print(f"warning: {getattr(ext, 'name', ext)} not built ({exc})")


def extensions() -> list[object]:
    if os.environ.get("OLOL_NO_EXT"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        return []
    from setuptools import Extension

    exts = [
        Extension(f"olol._fast.{pyx.stem}", [str(pyx.relative_to(ROOT))])
        for pyx in sorted((ROOT / "src" / "olol" / "_fast").glob("*.pyx"))
    ]
    return list(cythonize(exts, language_level="3", quiet=True))


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
