#!/usr/bin/env bash
# The one test command (README, .ci/run): set up and build, then every check and test suite.
# Ends with the line `N passed, N failed, N skipped`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec node scripts/test-all.mjs "$@"
