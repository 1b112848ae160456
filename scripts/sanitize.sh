#!/usr/bin/env bash
# Builds the addon with AddressSanitizer + UndefinedBehaviorSanitizer (CUDA off) into build-sanitize/ and
# runs the whole test suite against it; test/cuda-emu.test.ts builds the CUDA library on its CPU emulation with
# the same flags (KILN_EMU_CXXFLAGS), so the CUDA kernels run sanitized too. Any out-of-bounds access,
# use-after-free or UB in a kernel aborts the run. Usage: npm run test:sanitize
set -euo pipefail
cd "$(dirname "$0")/.."
out=build-sanitize
mkdir -p "$out"
flags="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize=vptr"
cmake -S . -B "$out" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKILN_CUDA=OFF -DKILN_MPI=AUTO \
  -DCMAKE_CXX_FLAGS="$flags" \
  -DCMAKE_JS_INC="$(pwd)/node_modules/node-api-headers/include" >"$out/configure.log"
cmake --build "$out" -j "$(nproc)" >"$out/build.log"
asan="$(gcc -print-file-name=libasan.so)"
ubsan="$(gcc -print-file-name=libubsan.so)"
log="$out/test.log"
set +e
# allocator_may_return_null: a request past ASan's 1 TiB limit (hostile.test asks for 2^40 floats) returns null as
# the system allocator does, so the addon's out-of-memory error is what gets tested, not ASan's abort
LD_PRELOAD="$asan:$ubsan" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1:allocator_may_return_null=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 KILN_EMU_CXXFLAGS="$flags" KILN_ADDON_PATH="$(pwd)/$out/kiln.node" KILN_MPI_ADDON_PATH="$(pwd)/$out/kiln_mpi.node" \
  node scripts/run-tests.mjs >"$log" 2>&1
rc=$?
set -e
summary="$(tail -n 1 "$log")"
if [ $rc -ne 0 ] || grep -qE "ERROR: AddressSanitizer|runtime error:" "$log"; then
  grep -E "FAIL|ERROR: AddressSanitizer|runtime error:|!!!" "$log" | head -40 >&2
  echo "sanitizer run FAILED (ASan+UBSan): $summary; full log in $log" >&2
  exit 1
fi
echo "sanitizer run clean (ASan+UBSan): ${summary/passed, /tests passed and }"
