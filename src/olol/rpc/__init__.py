"""`olol rpc-server`: llama.cpp's ggml RPC worker on loopback, behind an authenticated gRPC tunnel.

* `worker` launches, supervises and probes the local `ggml-rpc-server`;
* `service` is the gRPC `RpcWorker` service: capabilities, and the tunnel that
  validates ggml frames before they reach the worker;
* `preseed` fills the worker's tensor cache from a local GGUF file;
* `server` wires them into the `olol rpc-server` process.
"""
