#!/usr/bin/env bash
# Installs kiln the way a user's project does: `npm pack` (prepack puts the prebuilt binaries in), then the tarball
# into a fresh package with install scripts disabled and no compiler, CMake or make on PATH, then .ci/smoke.mjs.
# Prints the install time (dependencies come from the npm cache that `npm ci` filled, so it excludes the network).
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
KILN_PREBUILD_REQUIRE="${KILN_PREBUILD_REQUIRE:-x64}" npm pack --silent --pack-destination "$work" >"$work/pack.log" 2>&1 ||
  { cat "$work/pack.log" >&2; exit 1; }
tarball="$(ls "$work"/kiln-*.tgz)"
echo "consumer: packed $(basename "$tarball") ($(du -k "$tarball" | cut -f1) KiB): $(tar tzf "$tarball" | grep '^package/prebuilds/.*\.node$' | sed 's|package/prebuilds/||' | tr '\n' ' ')"
# a PATH with node, npm and sh (npm runs install scripts with sh) only
mkdir -p "$work/bin" "$work/app"
for t in node npm npx sh; do ln -s "$(command -v $t)" "$work/bin/$t"; done
for t in cmake g++ c++ gcc cc make nvcc; do
  if PATH="$work/bin" command -v "$t" >/dev/null 2>&1; then echo "consumer: $t is still on PATH" >&2; exit 1; fi
done
cp .ci/smoke.mjs "$work/app/smoke.mjs"
cd "$work/app"
printf '{ "name": "kiln-consumer", "private": true, "type": "module" }\n' >package.json
start=$(date +%s.%N)
PATH="$work/bin" npm install --ignore-scripts --no-audit --no-fund --prefer-offline --loglevel=error "$tarball" >"$work/install.log" 2>&1 ||
  { cat "$work/install.log" >&2; exit 1; }
secs=$(echo "$(date +%s.%N) - $start" | bc)
echo "consumer: npm install --ignore-scripts of the tarball took ${secs} s (no compiler on PATH)"
PATH="$work/bin" node smoke.mjs
# the same install with scripts on: the install hook finds the prebuild loads and builds nothing
rm -rf node_modules package-lock.json
start=$(date +%s.%N)
PATH="$work/bin" npm install --no-audit --no-fund --prefer-offline --loglevel=error "$tarball" >"$work/install2.log" 2>&1 ||
  { cat "$work/install2.log" >&2; exit 1; }
secs=$(echo "$(date +%s.%N) - $start" | bc)
echo "consumer: npm install with install scripts took ${secs} s (the prebuild matched; nothing compiled)"
PATH="$work/bin" node smoke.mjs >/dev/null
echo "consumer: smoke test passed twice"
