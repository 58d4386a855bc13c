#!/usr/bin/env bash
# Every benchmark: each bench/bench_*.py with a `__main__` entry (the others are shared helpers) runs in
# turn and rewrites its own section of BENCHMARKS.md (plots land in bench/plots/).
#   scripts/bench.sh              # all of them
#   scripts/bench.sh proxy        # those whose file name contains "proxy"
# Needs: the llama.cpp build (scripts/build-llama-cpp.sh, cached after the first run) and, for the
# throughput benchmark, nginx and wrk (`apt-get install nginx wrk`). A failing benchmark does not stop
# the others; the exit status says whether all passed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
VENV="$(scripts/bootstrap.sh)" || exit 1
export PATH="$PWD/$VENV/bin:$PATH"
python -c "import matplotlib" 2>/dev/null || python -m pip install -q matplotlib >&2 || exit 1
scripts/build-llama-cpp.sh >/dev/null || exit 1

filter="${1:-}"
failed=()
for file in bench/bench_*.py; do
  name="$(basename "$file" .py)"
  [[ -n "$filter" && "$name" != *"$filter"* ]] && continue
  grep -q '^if __name__ == "__main__":' "$file" || continue
  echo "== $name" >&2
  started=$SECONDS
  if python -m "bench.$name"; then
    echo "== $name: done in $((SECONDS - started)) s" >&2
  else
    echo "== $name: FAILED after $((SECONDS - started)) s" >&2
    failed+=("$name")
  fi
done
if ((${#failed[@]})); then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
