"""Translation between Ollama-shaped JSON and OLOL's protobuf schema, and error mapping."""
