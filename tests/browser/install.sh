#!/usr/bin/env bash
# Installs the browser test's npm dependencies (puppeteer-core, pinned in package-lock.json) into
# tests/browser/node_modules. puppeteer-core downloads no browser: the test drives Debian's chromium
# (scripts/setup installs it). Idempotent: nothing to do when node_modules matches package-lock.json.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if ! command -v npm >/dev/null 2>&1; then
  echo "tests/browser/install.sh: npm not found; run scripts/setup" >&2
  exit 1
fi
# npm ci writes node_modules/.package-lock.json last, so it is the marker of a complete install.
if [ -f node_modules/.package-lock.json ] && [ ! package-lock.json -nt node_modules/.package-lock.json ]; then
  exit 0
fi
echo "tests/browser/install.sh: npm ci in $(pwd)"
npm ci --no-audit --no-fund
