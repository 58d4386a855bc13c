#!/usr/bin/env bash
# The distribution tools the test suite runs (the packaging recipe checks): installs the
# missing ones with apt-get, so a clean machine runs every check instead of skipping it.
# Idempotent and cheap when all are there (a `command -v` per tool, no package manager).
#
#   scripts/system-deps.sh          # called by scripts/test.sh
#
# tool -> Debian package: shellcheck (scripts), rpmspec/rpmbuild (rpm: the spec and the .rpm),
# rpm2cpio + cpio (unpacking the .rpm to compare it with the .deb), ruby (the Homebrew
# formula's syntax), dpkg-deb (the .deb), systemd-analyze (the units).
set -euo pipefail

declare -A PACKAGE=(
  [shellcheck]=shellcheck
  [rpmspec]=rpm
  [rpmbuild]=rpm
  [ruby]=ruby
  [dpkg-deb]=dpkg
  [systemd-analyze]=systemd
)

missing=()
for tool in "${!PACKAGE[@]}"; do
  command -v "$tool" >/dev/null || missing+=("${PACKAGE[$tool]}")
done
((${#missing[@]})) || exit 0
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)

sudo=()
if [[ $EUID -ne 0 ]] && command -v sudo >/dev/null; then
  sudo=(sudo)
fi
if ! command -v apt-get >/dev/null || [[ $EUID -ne 0 && ${#sudo[@]} -eq 0 ]]; then
  echo "system-deps: the tests need these packages (or your distribution's equivalents): ${missing[*]}" >&2
  exit 1
fi
echo "system-deps: installing ${missing[*]}" >&2
# Another apt run may hold the lock (CI images, parallel setup): wait for it rather than fail.
"${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
  --no-install-recommends "${missing[@]}" >&2
