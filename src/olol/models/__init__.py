"""Model files OLOL can make by itself (for tests, demos and benchmarks)."""

from olol.models.tiny import TinyModelParams, ensure_tiny_model, find_vocab, write_tiny_model

__all__ = ["TinyModelParams", "ensure_tiny_model", "find_vocab", "write_tiny_model"]
