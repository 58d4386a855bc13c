"""OLOL: one LLM cluster out of many Ollama / llama.cpp hosts."""

from __future__ import annotations

import os

# gRPC's fork handlers crash children spawned with a preexec_fn while gRPC threads run
# (llama-server / ggml-rpc-server launches); must be set before anything imports grpc.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

__all__ = ["PROTOCOL_VERSION", "__version__"]

__version__ = "0.2.0"
# Major.minor of the gRPC schema in protos/olol.proto; peers must share the major.
PROTOCOL_VERSION = "1.0"
