#!/usr/bin/env bash
# Usage: tests/npm-ci.sh DIR — installs DIR's npm dependencies, pinned in DIR/package-lock.json, into
# DIR/node_modules (npm ci). Idempotent: nothing to do when node_modules matches package-lock.json.
# Shared by tests/server/install.sh and tests/browser/install.sh.
set -euo pipefail
dir=$1
name="tests/$dir/install.sh"
for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "$name: $tool not found; run scripts/setup (it installs Debian's nodejs and npm)" >&2
    exit 1
  fi
done
cd "$dir"
# npm ci writes node_modules/.package-lock.json last, so it is the marker of a complete install.
if [ -f node_modules/.package-lock.json ] && [ ! package-lock.json -nt node_modules/.package-lock.json ]; then
  exit 0
fi
echo "$name: npm ci in $(pwd)"
npm ci --no-audit --no-fund
