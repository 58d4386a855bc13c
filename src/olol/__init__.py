"""OLOL: one LLM cluster out of many Ollama / llama.cpp hosts."""

from __future__ import annotations

__all__ = ["PROTOCOL_VERSION", "__version__"]

__version__ = "0.2.0"
# Major.minor of the gRPC schema in protos/olol.proto; peers must share the major.
PROTOCOL_VERSION = "1.0"
