#!/usr/bin/env bash
# Installs everything the project needs on a fresh machine and builds it:
# pnpm (pinned in package.json), the JavaScript dependencies, the native addons, TypeScript,
# and the Python bridge in a virtual environment (.venv) with its pinned test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

pnpm_version=$(node -p "require('./package.json').packageManager.split('@')[1]")
if ! command -v pnpm >/dev/null 2>&1 || [ "$(pnpm --version)" != "$pnpm_version" ]; then
  echo "setup: installing pnpm $pnpm_version" >&2
  npm install -g "pnpm@$pnpm_version" >/dev/null
fi

if [ "${CI:-}" = "true" ]; then
  pnpm install --frozen-lockfile
else
  pnpm install
fi
pnpm build

# The Python bridge (packages/python-bridge), editable, with its test tools (pytest, openai)
# and everything they pull in pinned by its constraints.txt; `node scripts/test-all.mjs` runs
# its tests with .venv/bin/python.
python=${PYTHON:-python3}
if ! command -v "$python" >/dev/null 2>&1; then
  echo "setup: $python not found: the Python bridge needs Python 3.9 or later with venv and pip (or set PYTHON)" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $("$python" --version 2>&1)" >&2
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --disable-pip-version-check --quiet -c packages/python-bridge/constraints.txt -e "packages/python-bridge[test]"
