"""Translation between Ollama's OpenAI-compatible API (`/v1`) and its native API."""
