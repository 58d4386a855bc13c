#!/usr/bin/env bash
# Install a headless-capable chromium for the dashboard's browser tests (tests/ui), from the distribution.
# Playwright drives it (executable_path); Playwright's own browser download is never used.
set -euo pipefail
if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
  exit 0
fi
SUDO=""
if [[ "$(id -u)" != 0 ]]; then
  SUDO="sudo"
fi
if command -v apt-get >/dev/null; then
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium
elif command -v dnf >/dev/null; then
  $SUDO dnf install -y chromium
elif command -v brew >/dev/null; then
  brew install --cask chromium
else
  echo "install chromium with your package manager (the dashboard's browser tests need it)" >&2
  exit 1
fi
