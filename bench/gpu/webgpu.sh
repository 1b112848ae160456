#!/usr/bin/env bash
# WebGPU benchmarks on a lent GPU machine (the `device` tool; an NVIDIA H100/H200 with no display): Dawn over
# Vulkan. Needs the Vulkan loader carried in .gl/ (see /work/.library/device/README.md: download libvulkan1
# libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 into .gl once, and pass carry: [".gl"]). Then:
#   bash bench/gpu/webgpu.sh            # prints the adapter, matmul GFLOP/s, the MLP step and int4, vs cpu
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -d .gl ] && ! ldconfig -p | grep -q libvulkan; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi
[ -d node_modules ] || npm ci --no-audit --no-fund
export KILN_WEBGPU_BACKEND="${KILN_WEBGPU_BACKEND:-vulkan}"
npx kiln info 2>/dev/null || node --import tsx src/cli/main.ts info
npm run -s bench webgpu
