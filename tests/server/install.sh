#!/usr/bin/env bash
# Installs the test FHIR server's npm dependencies (pinned in package-lock.json) into tests/server/node_modules.
# Idempotent: does nothing when node_modules is already up to date with package-lock.json.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec ./npm-ci.sh server
