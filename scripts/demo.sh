#!/usr/bin/env bash
# The README's main command: a real local cluster (llama.cpp agents + proxy on :8000), a chat through it.
#   scripts/demo.sh [olol demo flags]      e.g. scripts/demo.sh --hosts 3 --port 11434
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="$(scripts/bootstrap.sh)"
scripts/build-llama-cpp.sh >/dev/null
exec "$VENV/bin/olol" demo "$@"
