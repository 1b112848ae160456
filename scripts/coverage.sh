#!/usr/bin/env bash
# Line coverage of the whole suite: src/ through V8's built-in coverage (c8 report, source-mapped to the .ts
# files) and native/ through gcov (the addon rebuilt with --coverage into build-coverage/, CUDA off). Prints one
# line with both numbers and fails when src/ is under 75%. Usage: npm run coverage (CI runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
out=build-coverage
rm -rf "$out/v8" && mkdir -p "$out"
cmake -S . -B "$out" -DCMAKE_BUILD_TYPE=Debug -DKILN_CUDA=OFF -DKILN_MPI=AUTO \
  -DCMAKE_CXX_FLAGS="--coverage -O1" -DCMAKE_SHARED_LINKER_FLAGS="--coverage" \
  -DCMAKE_JS_INC="$(pwd)/node_modules/node-api-headers/include" >"$out/configure.log"
cmake --build "$out" -j "$(nproc)" >"$out/build.log"
find "$out" -name '*.gcda' -delete
set +e
NODE_V8_COVERAGE="$(pwd)/$out/v8" KILN_ADDON_PATH="$(pwd)/$out/kiln.node" KILN_MPI_ADDON_PATH="$(pwd)/$out/kiln_mpi.node" node scripts/run-tests.mjs >"$out/test.log" 2>&1
rc=$?
set -e
if [ $rc -ne 0 ]; then
  grep -E "FAIL|!!!" "$out/test.log" | head -20 >&2
  echo "coverage run FAILED: $(tail -n 1 "$out/test.log"); full log in $out/test.log" >&2
  exit 1
fi
src=$(npx c8 report --temp-directory "$out/v8" --report-dir "$out/c8" --include 'src/**' --exclude-after-remap \
  --reporter text-summary | awk '/^Lines/ {print $3, $5}')
native=$(node scripts/gcov-summary.mjs "$out")
pct=${src%%%*}
echo "coverage: src/ lines ${src%% *} (${src#* } lines), native/ lines ${native% *} (${native#* } lines); HTML report in $out/c8"
awk -v p="$pct" 'BEGIN { exit !(p + 0 >= 75) }' || { echo "src/ line coverage ${pct}% is under 75%" >&2; exit 1; }
