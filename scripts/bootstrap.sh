#!/usr/bin/env bash
# Create/refresh the project's virtualenv (.venv) with OLOL and its test tools.
# Idempotent: reinstalls only when pyproject.toml, setup.py, protos/ or the .pyx sources change.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
VENV="${OLOL_VENV:-.venv}"
if [[ ! -x "$VENV/bin/python" ]]; then
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.olol-installed"
want="$(cat pyproject.toml setup.py protos/*.proto src/olol/_fast/*.pyx 2>/dev/null | sha256sum | cut -c1-16)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q -e ".[test]" >&2
  echo "$want" > "$stamp"
fi
echo "$VENV"
