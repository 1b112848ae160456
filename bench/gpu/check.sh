#!/usr/bin/env bash
# The GPU check (issue 24): one self-contained run on a bare lent GPU machine, under 8 minutes. Prepare here with
# `bash bench/gpu/pack.sh` (writes .gpu-carry/: Node, the node_modules the check needs, the built addon with its
# CUDA kernels, the Vulkan loaders), then run there, carrying .gpu-carry:
#   bash bench/gpu/check.sh
# Steps, each timed, the run failing if any fails: nvidia-smi; unpack; `kiln info`, failing unless the cuda
# backend and a Vulkan WebGPU adapter are available; the suites that test every backend (conformance, gradcheck,
# errors, nn, optim, attention, quant, recurrent, higher-order, memory, tensor) with
# KILN_REQUIRE_CUDA=1 KILN_REQUIRE_WEBGPU=1 (a backend that is missing fails instead of skipping its cases);
# kiln's GEMM (1024-4096: exact float32, then TF32, and bfloat16) and MLP step on cuda beside cuBLAS and PyTorch
# eager (bench/gpu/torch_ref.py); the same suites' products and the GEMM bench again with KILN_CUDA_CUBLASLT set to
# the libcublasLt of PyTorch's wheels (or KILN_CUBLASLT_PATH); NCCL's one-rank allreduce and broadcast on kiln's
# stream (nccl_check.ts); bfloat16 and TF32 products on kiln's Hopper kernel (KILN_CUDA_WGMMA=1): conformance and
# the GEMM bench. Ends with one line per step and `gpu check: passed` or `gpu check: FAILED`.
set -uo pipefail
cd "$(dirname "$0")/../.."
carry=.gpu-carry
t_start=$(date +%s)
summary=()
failed=0
step() {
  local name=$1 t0 rc
  shift
  t0=$(date +%s)
  echo "=== $name"
  "$@"
  rc=$?
  local line
  line="$(printf '%-28s %s %4d s' "$name" "$([ $rc -eq 0 ] && echo ok || echo "FAILED (exit $rc)")" $(($(date +%s) - t0)))"
  echo "--- $line"
  summary+=("$line")
  [ $rc -eq 0 ] || failed=1
  return $rc
}
finish() {
  echo
  printf '%s\n' "${summary[@]}"
  echo "total $(($(date +%s) - t_start)) s"
  if [ $failed -eq 0 ]; then echo 'gpu check: passed'; else echo 'gpu check: FAILED'; fi
  exit $failed
}

# a step's time limit: its own cap, cut to what is left of the run's 8 minutes
limit() {
  local left=$((t_start + 480 - $(date +%s)))
  if [ "$1" -lt "$left" ]; then echo "$1"; else echo $((left > 5 ? left : 5)); fi
}

# file.xz to stdout: xz, else Python's lzma (an image without xz-utils)
unxz_to_stdout() {
  if command -v xz > /dev/null; then
    xz -dc "$1"
  else
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$1"
  fi
}

unpack() {
  [ -d "$carry" ] || { echo "no $carry here: run bash bench/gpu/pack.sh where Node is, and carry $carry"; return 1; }
  mkdir -p "$carry/bin"
  if [ ! -x "$carry/bin/node" ]; then
    unxz_to_stdout "$carry/node.xz" > "$carry/bin/node" && chmod +x "$carry/bin/node" || return 1
  fi
  if [ ! -d node_modules/tsx ]; then unxz_to_stdout "$carry/node_modules.tar.xz" | tar -xf - || return 1; fi
  unxz_to_stdout "$carry/build.tar.xz" | tar -xf - || return 1
  # Dawn needs the Vulkan loader, which the image lacks; the driver's ICD sits under /usr/local/nvidia
  if ! ldconfig -p | grep -q libvulkan; then
    for f in "$carry"/gl/*.deb; do dpkg -x "$f" / || return 1; done
    ldconfig
  fi
  command -v node && node --version
}

info() {
  local out
  out="$(node --import tsx src/cli/main.ts info 2>&1)"
  echo "$out"
  echo "$out" | grep -Eq '^ +cuda +available' || { echo 'the cuda backend is not available'; return 1; }
  echo "$out" | grep -Eiq '^webgpu:.*vulkan' || { echo 'no Vulkan WebGPU adapter'; return 1; }
}

suite() {
  local f rc=0
  # each file takes 2-25 s on a 2-core cpu-only machine; the ones after nn.test take a few seconds each, and all
  # of them pass on the CPU emulation of the cuda backend (test/cuda-emu.test.ts)
  for f in conformance gradcheck errors nn.test optim attention quant recurrent higher-order memory tensor.test; do
    KILN_REQUIRE_CUDA=1 KILN_REQUIRE_WEBGPU=1 timeout "$(limit 150)" node scripts/run-tests.mjs "$f" \
      > "/tmp/kiln-gpu-$f.log" 2>&1
    local r=$?
    # the failures in full, then the count
    grep -E -B2 -A12 'FAIL|✘|Error' "/tmp/kiln-gpu-$f.log" | head -80
    echo "$f: $(tail -1 "/tmp/kiln-gpu-$f.log") (exit $r)"
    [ $r -eq 0 ] || rc=1
  done
  return $rc
}

# PyTorch's figures (JSON lines), which the cuda bench prints kiln's beside as ratios (KILN_GPU_PEERS)
export KILN_GPU_PEERS=/tmp/kiln-gpu-torch.jsonl
speed() {
  timeout "$(limit 120)" python3 bench/gpu/torch_ref.py | tee "$KILN_GPU_PEERS" || return 1
  timeout "$(limit 120)" node --import tsx bench/run.ts cuda || return 1
  KILN_CUDA_GEMM=tf32 timeout "$(limit 90)" node --import tsx bench/run.ts cuda
}

# a library of PyTorch's wheels: the nvidia-* packages' lib folders, then torch/lib
torch_lib() {
  python3 -c '
import glob, os, sys
roots = []
try:
    import nvidia
    roots += list(nvidia.__path__)
except ImportError:
    pass
try:
    import torch
    roots.append(os.path.join(os.path.dirname(torch.__file__), "lib"))
except ImportError:
    pass
found = [f for r in roots for f in sorted(glob.glob(os.path.join(r, "**", sys.argv[1] + "*"), recursive=True))]
print(found[0] if found else "")' "$1" 2> /dev/null
}

# cuBLASLt in use for the GEMMs (KILN_CUDA_CUBLASLT): kiln info must say so, the products of conformance, gradcheck
# and nn must pass on it, and the bench shows its speed beside kiln's kernels above
cublaslt() {
  local lib out f r rc=0
  lib="${KILN_CUBLASLT_PATH:-$(torch_lib libcublasLt.so)}"
  echo "libcublasLt: ${lib:-not found}"
  [ -n "$lib" ] || return 1
  out="$(KILN_CUDA_CUBLASLT="$lib" node --import tsx src/cli/main.ts info 2>&1 | grep '^cuda:')"
  echo "$out"
  echo "$out" | grep -q 'GEMMs on cuBLASLt' || return 1
  for f in conformance gradcheck nn.test; do
    # webgpu's cases ran in the step before: KILN_WEBGPU=0 leaves them out here
    KILN_CUDA_CUBLASLT="$lib" KILN_REQUIRE_CUDA=1 KILN_WEBGPU=0 timeout "$(limit 120)" node scripts/run-tests.mjs "$f" \
      > "/tmp/kiln-gpu-lt-$f.log" 2>&1
    r=$?
    grep -E -B2 -A12 'FAIL|✘|Error' "/tmp/kiln-gpu-lt-$f.log" | head -60
    echo "$f on cuBLASLt: $(tail -1 "/tmp/kiln-gpu-lt-$f.log") (exit $r)"
    [ $r -eq 0 ] || rc=1
  done
  KILN_CUDA_CUBLASLT="$lib" timeout "$(limit 90)" node --import tsx bench/run.ts cuda || rc=1
  KILN_CUDA_CUBLASLT="$lib" node --import tsx src/cli/main.ts info 2>&1 | grep '^cuda:' # a refusal shows here
  return $rc
}

# kiln's Hopper kernel for bfloat16 (and, under KILN_CUDA_GEMM=tf32, TF32) products (KILN_CUDA_WGMMA=1: TMA,
# mbarriers, wgmma; opt-in until this step has passed on a GPU): kiln info must say it is in use, conformance's
# products must pass on it (its bfloat16 matmul cases cover operands read in place, packed, partial tiles, K over
# many stages of the ring), and the bench shows its speed beside the WMMA kernel's above, bfloat16 and then TF32
# (whose sampled products the bench checks)
wgmma() {
  local out r
  out="$(KILN_CUDA_WGMMA=1 node --import tsx src/cli/main.ts info 2>&1 | grep '^cuda:')"
  echo "$out"
  echo "$out" | grep -q 'GEMMs on wgmma' || return 1
  KILN_CUDA_WGMMA=1 KILN_REQUIRE_CUDA=1 KILN_WEBGPU=0 timeout "$(limit 90)" node scripts/run-tests.mjs conformance \
    > /tmp/kiln-gpu-wgmma.log 2>&1
  r=$?
  grep -E -B2 -A12 'FAIL|✘|Error' /tmp/kiln-gpu-wgmma.log | head -60
  echo "conformance on wgmma: $(tail -1 /tmp/kiln-gpu-wgmma.log) (exit $r)"
  KILN_CUDA_WGMMA=1 timeout "$(limit 90)" node --import tsx bench/run.ts cuda || r=1
  # TF32 on wgmma: the bench checks its sampled products against float64 dots (the TF32 bound)
  KILN_CUDA_WGMMA=1 KILN_CUDA_GEMM=tf32 timeout "$(limit 90)" node --import tsx bench/run.ts cuda || r=1
  return $r
}

export PATH="$PWD/$carry/bin:$PATH"  # the carried Node, unpacked below
# NCCL for kn.distributed, opened at run time: the libnccl.so.2 of PyTorch's nvidia wheels unless KILN_NCCL_PATH
nccl() {
  local lib out
  lib="${KILN_NCCL_PATH:-$(torch_lib libnccl.so)}"
  echo "libnccl: ${lib:-not found}"
  out="$(KILN_NCCL_PATH="$lib" timeout "$(limit 60)" node --import tsx bench/gpu/nccl_check.ts)"
  echo "$out"
  echo "$out" | grep -q '"ok":true'
}

step nvidia-smi nvidia-smi || finish
step unpack unpack || finish
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi
export KILN_WEBGPU_BACKEND=vulkan
step 'kiln info' info
step 'suites on cuda and webgpu' suite
step 'GEMM and MLP vs PyTorch' speed
step 'cuBLASLt GEMMs' cublaslt
step 'NCCL one-rank collectives' nccl
# last: a kernel never run before might stall, and its time limit must not come out of the steps above
step 'wgmma GEMMs (sm_90a)' wgmma
finish
