"""The generated protobuf/gRPC modules, as `pb` (messages) and `rpc` (stubs, servicers).

Builds generate them from protos/ (setup.py); a source checkout (re)generates them on first
import when they are missing or older than the .proto (`olol._proto_fresh`).
"""

from __future__ import annotations

from olol._proto_fresh import ensure_current

ensure_current()

from olol._proto import olol_pb2 as pb  # noqa: E402  (generated just above when needed)
from olol._proto import olol_pb2_grpc as rpc  # noqa: E402

__all__ = ["pb", "rpc"]
