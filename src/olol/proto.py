"""The generated protobuf/gRPC modules, as `pb` (messages) and `rpc` (stubs, servicers).

Builds generate them from protos/ (see setup.py). Running straight from a source
checkout without a build, they are generated on first import instead.
"""

from __future__ import annotations

from pathlib import Path

try:
    from olol._proto import olol_pb2 as pb
    from olol._proto import olol_pb2_grpc as rpc
except ImportError:  # pragma: no cover - only in an unbuilt checkout
    from olol._proto_build import generate

    _here = Path(__file__).resolve().parent
    generate(_here.parents[1] / "protos", _here / "_proto")
    from olol._proto import olol_pb2 as pb
    from olol._proto import olol_pb2_grpc as rpc

__all__ = ["pb", "rpc"]
