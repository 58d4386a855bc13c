"""The Ollama backend: its HTTP API over OLOL's own HTTP/1.1 pool (`_http1`)."""
