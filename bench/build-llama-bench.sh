#!/usr/bin/env bash
# Builds llama.cpp's own `llama-bench` once, from the llama.cpp source that ships inside the
# node-llama-cpp npm package (its git bundle), into the cache. Outside CI: it takes 10–20
# minutes on 2 cores. Prints the binary's path; bench/generation.mjs uses it when present.
#
#   bash bench/build-llama-bench.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
pkg="$(cd "$root/bench/node_modules/node-llama-cpp" && pwd -P)"
tag="$(node -e "console.log(require('$pkg/llama/llama.cpp.info.json').tag)")"
cache="${MISTRALRS_CACHE:-$HOME/.cache/mistralrs}/llama.cpp/$tag"
bin="$cache/build/bin/llama-bench"
if [[ -x "$bin" ]]; then echo "$bin"; exit 0; fi
mkdir -p "$cache"
if [[ ! -d "$cache/src/.git" ]]; then
  rm -rf "$cache/src"
  git clone --quiet "$pkg/llama/gitRelease.bundle" "$cache/src"
fi
# The CPU backend only, tuned for this machine (as the prebuilt binaries are for theirs).
cmake -S "$cache/src" -B "$cache/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >&2
cmake --build "$cache/build" --target llama-bench -j "$(nproc)" >&2
echo "$bin"
