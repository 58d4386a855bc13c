"""The one model-name normaliser (`olol._fast.names`, re-exported by `olol.cluster`)."""

from __future__ import annotations

from olol import cluster
from olol._fast.names import normalize


def test_normalize_name() -> None:
    assert normalize("Llama3") == "llama3:latest"
    assert normalize("llama3:8b") == "llama3:8b"
    assert normalize("host:11434/ns/model") == "host:11434/ns/model:latest"


def test_cluster_uses_it() -> None:
    assert cluster.normalize is normalize
