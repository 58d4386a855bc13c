"""Ollama's errors as the simulator raises them, and the literal texts tests compare against.

The texts are Ollama's own, deliberately not imported from `olol.errors`, so the
simulator stays an independent oracle the project's errors are checked against.
"""

from __future__ import annotations

BUSY_MESSAGE = "server busy, please try again. maximum pending requests exceeded"
DEFAULT_FAIL_MESSAGE = "an error was encountered while running the model: simulated failure"
MODELS_DIR = "/root/.ollama/models"  # only quoted in error texts, never touched


class SimError(Exception):
    """An Ollama error: becomes `{"error": message}` with `status`, or an error line mid-stream."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
