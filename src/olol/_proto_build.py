"""Compile every protos/*.proto into olol._proto (used by setup.py and at import time)."""

from __future__ import annotations

import re
from pathlib import Path


def generate(proto_dir: Path, out_dir: Path) -> None:
    """Run protoc (from grpcio-tools) and make the generated imports package-relative."""
    from grpc_tools import protoc  # imported lazily: only builds need grpcio-tools

    out_dir.mkdir(parents=True, exist_ok=True)
    proto_include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{proto_dir}",
        f"-I{proto_include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *sorted(str(p) for p in proto_dir.glob("*.proto")),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed for {proto_dir}")
    for generated in out_dir.glob("*_pb2*.py"):
        text = generated.read_text()
        # protoc writes top-level `import x_pb2`, which only works from inside the folder.
        fixed = re.sub(r"^import (\w+_pb2) as", r"from . import \1 as", text, flags=re.M)
        if fixed != text:
            generated.write_text(fixed)
    (out_dir / "__init__.py").write_text('"""Generated from protos/olol.proto; do not edit."""\n')
