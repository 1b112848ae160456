#!/usr/bin/env bash
# CUDA backend checks and benchmarks on a lent GPU machine (the `device` tool: NVIDIA H100/H200, image 'cuda' with
# nvcc, CMake and PyTorch; Node is not in the image, so carry a Node 20+ binary as node/ — e.g. the linux-x64
# tarball's bin/node — and this repo's node_modules). Runs the conformance suite and gradchecks on every backend
# (cuda included when a device is found), then kiln's CUDA GEMM and MLP step next to PyTorch/cuBLAS.
#   bash bench/gpu/cuda.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PWD/node/bin:$PATH"
node --version
npm run -s build:native -- --cuda   # builds kiln_cuda.so (the CUDA kernels for sm_80 and sm_90)
nvidia-smi || true
node --import tsx src/cli/main.ts info
# a missing cuda backend must fail the run, not skip every cuda case
KILN_REQUIRE_CUDA=1 npx uvu -r tsx test 'conformance|gradcheck|errors' 2>&1 | tail -20
python3 bench/gpu/torch_ref.py
npm run -s bench cuda
# NCCL for kn.distributed: dlopen'd at run time; PyTorch's wheel ships a libnccl.so.2
nccl="$(python3 -c 'import nvidia.nccl, os; print(os.path.join(os.path.dirname(nvidia.nccl.__file__), "lib", "libnccl.so.2"))' 2>/dev/null || true)"
KILN_NCCL_PATH="${KILN_NCCL_PATH:-$nccl}" node --import tsx bench/gpu/nccl_check.ts
