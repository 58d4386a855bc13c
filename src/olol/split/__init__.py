"""`olol dist`: one model split across `olol rpc-server` hosts by llama.cpp's RPC backend.

* `profile` reads what the model needs per layer from its GGUF header;
* `planner` turns workers' memory and measured speed into `--tensor-split`;
* `tunnel` carries llama-server's ggml traffic to remote workers over gRPC;
* `coordinator` runs llama-server on a plan and re-plans when a worker fails;
* `front` is the stable HTTP endpoint in front of whichever llama-server serves.
"""
