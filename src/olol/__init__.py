"""OLOL: one LLM cluster out of many Ollama / llama.cpp hosts."""

from __future__ import annotations

import os

# gRPC's fork handlers crash children spawned with a preexec_fn while gRPC threads run
# (llama-server / ggml-rpc-server launches); must be set before anything imports grpc.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
# gRPC's EventEngine endpoints (its default since 1.6x) hand every read and write to a thread pool of their
# own, one more thread hop per message than the poller they replaced (still built in): that hop costs
# 30-40% of gRPC's latency and CPU per message in the tunnel's ping-pong (bench_dist_tunnel rtt).
# Read once, when grpc is first imported; an explicit GRPC_EXPERIMENTS wins.
os.environ.setdefault("GRPC_EXPERIMENTS", "-event_engine_client,-event_engine_listener")

__all__ = ["OLLAMA_API_VERSION", "PROTOCOL_VERSION", "__version__"]

__version__ = "0.2.0"
# The Ollama release whose API OLOL implements (request fields, replies, error texts): what `/api/version`
# says for hosts that are not Ollama (llama.cpp, split models), so clients that gate features on the
# Ollama version see the API they really get.
OLLAMA_API_VERSION = "0.12.6"
# Major.minor of the gRPC schema in protos/olol.proto; peers must share the major.
PROTOCOL_VERSION = "1.0"
