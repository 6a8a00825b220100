#!/usr/bin/env bash
# Installs everything the project needs on a fresh machine and builds it:
# pnpm (pinned in package.json), the JavaScript dependencies, the native addons, TypeScript.
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
