#!/usr/bin/env bash
# Build llama.cpp's `llama-server` and `ggml-rpc-server` from the source vendored in
# PyPI's pinned llama-cpp-python sdist, and cache them so only the first run pays.
#
#   scripts/build-llama-cpp.sh            # prints the bin dir on its last line
#
# Env: OLOL_LLAMA_CACHE (default ~/.cache/olol/llama.cpp), OLOL_LLAMA_JOBS (default nproc),
#      OLOL_LLAMA_CMAKE_ARGS (extra cmake flags, e.g. -DGGML_CUDA=ON).
set -euo pipefail

VERSION="${OLOL_LLAMA_CPP_PY_VERSION:-0.3.36}"
CACHE="${OLOL_LLAMA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/olol/llama.cpp}/$VERSION"
BIN="$CACHE/bin"
JOBS="${OLOL_LLAMA_JOBS:-$(nproc)}"

if [[ -x "$BIN/llama-server" && -x "$BIN/ggml-rpc-server" && -f "$CACHE/models/ggml-vocab-llama-spm.gguf" ]]; then
  echo "$BIN"
  exit 0
fi

mkdir -p "$CACHE"
WORK="$CACHE/src"
if [[ ! -d "$WORK/vendor/llama.cpp" ]]; then
  DL="$(mktemp -d)"
  trap 'rm -rf "$DL"' EXIT
  echo "fetching llama-cpp-python==$VERSION sdist ..." >&2
  python3 -m pip download --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$DL" >&2
  rm -rf "$WORK"; mkdir -p "$WORK"
  tar -xzf "$DL"/llama_cpp_python-*.tar.gz -C "$WORK" --strip-components=1
fi

SRC="$WORK/vendor/llama.cpp"
BUILD="$CACHE/build"
echo "building llama.cpp (jobs=$JOBS) ..." >&2
# shellcheck disable=SC2086
cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DGGML_RPC=ON -DLLAMA_CURL=OFF \
  -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  ${OLOL_LLAMA_CMAKE_ARGS:-} >&2
cmake --build "$BUILD" -j "$JOBS" --target ggml-rpc-server llama-server >&2

mkdir -p "$BIN" "$CACHE/models"
cp -a "$BUILD"/bin/* "$BIN"/
cp "$SRC/models/ggml-vocab-llama-spm.gguf" "$CACHE/models/"
echo "$BIN"
