#!/usr/bin/env bash
# Installs the test FHIR server's npm dependencies (pinned in package-lock.json) into tests/server/node_modules.
# Idempotent: does nothing when node_modules is already up to date with package-lock.json.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if ! command -v node >/dev/null 2>&1; then
  echo "tests/server/install.sh: node not found; run scripts/setup (it installs Debian's nodejs)" >&2
  exit 1
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "tests/server/install.sh: npm not found; install it with: apt-get install npm" >&2
  exit 1
fi

# npm ci writes node_modules/.package-lock.json last, so it is the marker of a complete install.
if [ -f node_modules/.package-lock.json ] && [ ! package-lock.json -nt node_modules/.package-lock.json ]; then
  exit 0
fi
echo "tests/server/install.sh: npm ci in $(pwd)"
npm ci --no-audit --no-fund
