"""Adapters from one inference backend (Ollama, llama.cpp) to OLOL's interface."""

from olol.cluster.backend import Backend, BackendInfo

__all__ = ["Backend", "BackendInfo"]
