#!/usr/bin/env bash
# The whole test suite, as CI runs it: bootstrap, system tools, build llama.cpp (cached), lint, type-check,
# import contracts, pytest.
#   scripts/test.sh                 # everything
#   scripts/test.sh -m "not slow"   # the fast loop (no llama.cpp)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="$(scripts/bootstrap.sh)"
scripts/system-deps.sh  # the packaging checks' tools (rpm, ruby, ...): they run, never skip
export PATH="$PWD/$VENV/bin:$PATH"
if [[ "$*" != *"not slow"* ]]; then
  scripts/build-llama-cpp.sh >/dev/null
fi
# The dashboard's browser tests drive the distribution's chromium (Playwright's download cannot be used).
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  scripts/install-chromium.sh >&2
fi
if [[ -f package.json ]]; then
  npm install --no-audit --no-fund --silent >/dev/null
fi
ruff check src tests bench
mypy
lint-imports  # the layers and contracts in pyproject.toml [tool.importlinter]
exec python -m pytest "$@"
