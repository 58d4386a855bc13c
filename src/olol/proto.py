"""The generated protobuf/gRPC modules, one pair per .proto, under one roof.

`pb`/`rpc`: protos/olol.proto (the agent's service); `ggml_pb`/`ggml_grpc`: olol_rpc.proto (the
rpc-server's `RpcWorker`); `sessions_pb`/`sessions_grpc`: olol_sessions.proto; `models_pb`/`models_grpc`:
olol_models.proto (model transfer). Builds generate them from protos/ (setup.py); a source checkout
(re)generates them on first import when they are missing or older than the .proto (`olol._proto_fresh`).
"""

from __future__ import annotations

from olol._proto_fresh import ensure_current

ensure_current()

# Generated just above when needed, hence below the call (E402).
from olol._proto import olol_models_pb2 as models_pb  # noqa: E402
from olol._proto import olol_models_pb2_grpc as models_grpc  # noqa: E402
from olol._proto import olol_pb2 as pb  # noqa: E402
from olol._proto import olol_pb2_grpc as rpc  # noqa: E402
from olol._proto import olol_rpc_pb2 as ggml_pb  # noqa: E402
from olol._proto import olol_rpc_pb2_grpc as ggml_grpc  # noqa: E402
from olol._proto import olol_sessions_pb2 as sessions_pb  # noqa: E402
from olol._proto import olol_sessions_pb2_grpc as sessions_grpc  # noqa: E402

__all__ = ["ggml_grpc", "ggml_pb", "models_grpc", "models_pb", "pb", "rpc", "sessions_grpc", "sessions_pb"]
