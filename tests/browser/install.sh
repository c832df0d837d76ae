#!/usr/bin/env bash
# Installs the browser test's npm dependencies (puppeteer-core, pinned in package-lock.json) into
# tests/browser/node_modules. puppeteer-core downloads no browser: the test drives Debian's chromium
# (scripts/setup installs it). Idempotent: nothing to do when node_modules matches package-lock.json.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec ./npm-ci.sh browser
