#!/usr/bin/env bash
# Installs everything the project needs on a fresh machine and builds it:
# pnpm (pinned in package.json), the JavaScript dependencies, the native addons, TypeScript,
# the Python bridge in a virtual environment (.venv) with its pinned test tools, and a headless
# Chromium for the web UI's test (Debian's `chromium`, when none is found).
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

# A headless Chromium for the web UI's browser test (packages/server/test/native/web-ui.test.ts,
# driven by playwright-core): $CHROMIUM_PATH, or `chromium` / `chromium-browser` on the PATH;
# else Debian's `chromium` package. Without one that test fails, saying so.
if [ -n "${CHROMIUM_PATH:-}" ]; then
  [ -x "$CHROMIUM_PATH" ] || echo "setup: CHROMIUM_PATH=$CHROMIUM_PATH is not executable: the web UI's test will fail" >&2
elif ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  as_root=""
  [ "$(id -u)" -eq 0 ] || as_root=sudo
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: no Chromium found and no apt-get to install one: install Chromium and put it on the PATH (or set CHROMIUM_PATH); the web UI's test needs it" >&2
  elif [ -n "$as_root" ] && ! command -v sudo >/dev/null 2>&1; then
    echo "setup: no Chromium found, and installing Debian's chromium needs root: run 'apt-get install chromium' as root (or set CHROMIUM_PATH); the web UI's test needs it" >&2
  else
    echo "setup: installing Debian's chromium (the web UI's browser test)" >&2
    $as_root apt-get update -qq
    $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
fi
