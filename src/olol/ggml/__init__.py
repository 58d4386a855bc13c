"""The ggml RPC link as both of its ends speak it: `olol rpc-server` (the worker's end) and a split
model's coordinator (`olol.split`, llama-server's end): gRPC options, the socket relay."""
