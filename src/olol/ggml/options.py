"""gRPC channel and server options of the RpcWorker service (TLS: `olol.security.tls.TlsFiles`)."""

from __future__ import annotations

__all__ = ["CHANNEL_OPTIONS", "KEEPALIVE_MS", "SERVER_OPTIONS"]

# Weights travel as SET_TENSOR frames of hundreds of MiB; messages stay far below
# this, but a peer must never be refused a message the other side may send.
MAX_MESSAGE = 256 << 20
KEEPALIVE_MS = 30_000
CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    # Tunnels stay open for hours between tokens: keep idle connections alive through NATs.
    ("grpc.keepalive_time_ms", KEEPALIVE_MS),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]
# The server must accept those pings: by default it tolerates one per 5 minutes without data and answers
# more with GOAWAY ("too_many_pings"), which would break an idle tunnel and, with it, llama-server.
SERVER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", KEEPALIVE_MS // 3),
    ("grpc.http2.max_ping_strikes", 0),
]
