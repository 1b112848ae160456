#!/usr/bin/env bash
# Builds kiln.node with node-gyp from binding.gyp (the build used where CMake is absent) into build-gyp/ and runs
# the suites that exercise every native kernel against it: the op conformance checks on every ISA, the addon's own
# validation, bad input, the native fuzzer, gradient checks and quantization. Prints one line. CI runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build-gyp
mkdir -p "$out"
start=$(date +%s)
node scripts/build-native.mjs --gyp --out="$out" >"$out/build.log" 2>&1 || { tail -30 "$out/build.log" >&2; exit 1; }
built=$(( $(date +%s) - start ))
passed=0
failed=0
for suite in conformance native errors fuzz-native gradcheck quant; do
  KILN_ADDON_PATH="$(pwd)/$out/kiln.node" node scripts/run-tests.mjs "$suite" >"$out/$suite.log" 2>&1 || true
  line="$(tail -n 1 "$out/$suite.log")"
  p=$(echo "$line" | sed -nE 's/^([0-9]+) passed, ([0-9]+) failed$/\1/p')
  f=$(echo "$line" | sed -nE 's/^([0-9]+) passed, ([0-9]+) failed$/\2/p')
  if [ -z "$p" ]; then
    echo "node-gyp build: suite $suite did not finish (see $out/$suite.log)" >&2
    exit 1
  fi
  passed=$((passed + p))
  failed=$((failed + f))
done
if [ "$failed" -ne 0 ]; then
  grep -hE "FAIL|✘" "$out"/*.log | head -20 >&2
  echo "node-gyp build (${built} s): $passed passed, $failed failed" >&2
  exit 1
fi
echo "node-gyp build (${built} s) passes the native suites: $passed tests (conformance, native, errors, fuzz-native, gradcheck, quant)"
