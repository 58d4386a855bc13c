"""The generated modules of protos/olol_rpc.proto, as `pb` (messages) and `rpc` (stubs, servicers).

Builds generate them from protos/; an unbuilt checkout (or one built before
olol_rpc.proto existed) generates them on first import instead.
"""

from __future__ import annotations

from pathlib import Path

try:
    from olol._proto import olol_rpc_pb2 as pb
    from olol._proto import olol_rpc_pb2_grpc as rpc
except ImportError:  # pragma: no cover - only in an unbuilt or stale checkout
    from olol._proto_build import generate

    _here = Path(__file__).resolve().parents[1]
    generate(_here.parents[1] / "protos", _here / "_proto")
    from olol._proto import olol_rpc_pb2 as pb
    from olol._proto import olol_rpc_pb2_grpc as rpc

__all__ = ["pb", "rpc"]
