// The CUDA runtime as kiln's CUDA library uses it, on the CPU: with cuda_emu.h's thread blocks, this builds
// kiln_cuda.so's own sources (native/cuda/*.cc and kernels/cuda/*.cu, each `kernel<<<grid, block, smem,
// stream>>>(args);` rewritten by test/emulate.ts as `emu_kernel(grid, block, smem, stream, [&] { kernel(args);
// }, "kernel");`) into a library kiln.node opens like the real one (KILN_CUDA_ADDON_PATH), so the cuda backend's
// whole path (the TypeScript backend, the N-API layer, the plugin table, the runtime's allocator and error flags,
// every launcher and kernel) runs the test suites without a GPU.
//
// The device it reports is an sm_80 one with 4 SMs (so kernels sized by the SM count take few blocks). Device
// memory is host memory, handed out full of 0xFF bytes (NaN as float32) so a kernel that reads what nothing wrote
// shows it. A launch is checked as the hardware checks it (an empty grid, y or z past 65535, x past 2^31 - 1, more
// than 1024 threads a block, or more than 48 KiB of dynamic shared memory fail, and the next cudaGetLastError
// reports it), then runs every block, one at a time, before the call returns. cub's radix sort is a stable sort on
// the chosen key bits, as cub's is. With KILN_EMU_TRACE set, each launch, synchronization, allocation, copy and
// memset is traced to that file (below). The Hopper kernel (matmul_sm90.cu) is not part of this build: it is
// native/cuda/no_sm90.cc's, and its own check is wgmma_emu_check.cc.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <vector>

#define KILN_EMU_FIBERS 1  // a block's threads as fibers: the suites launch thousands of kernels
#include <cstdarg>
#include <cstdio>

#include "cuda_emu.h"

// ---- a trace of what the library asks of the device, for test/emu/steps.ts: with KILN_EMU_TRACE naming a file,
// one line per call, appended and flushed as it happens ("launch <kernel>", "sync", "malloc <bytes>", "free",
// "memset <bytes>", "copy <h2h|h2d|d2h|d2d> <bytes>"), so lines a script appends between calls fall in order.
inline FILE* emu_trace_file() {
  static FILE* f = [] {
    const char* path = std::getenv("KILN_EMU_TRACE");
    return path ? std::fopen(path, "a") : nullptr;
  }();
  return f;
}
__attribute__((format(printf, 1, 2))) inline void emu_trace(const char* format, ...) {
  FILE* f = emu_trace_file();
  if (!f) return;
  va_list args;
  va_start(args, format);
  std::vfprintf(f, format, args);
  va_end(args);
  std::fputc('\n', f);
  std::fflush(f);
}

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
};
inline const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
  }
  return "cudaErrorUnknown";
}
inline const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
  }
  return "unknown error";
}
inline cudaError_t emu_last_error = cudaSuccess;  // what the next cudaGetLastError returns (and clears)
inline cudaError_t cudaGetLastError() {
  const cudaError_t e = emu_last_error;
  emu_last_error = cudaSuccess;
  return e;
}

// ---- the device
struct EmuStream {};
using cudaStream_t = EmuStream*;
struct EmuPool {};
using cudaMemPool_t = EmuPool*;
constexpr unsigned cudaStreamNonBlocking = 1;
enum cudaDeviceAttr {
  cudaDevAttrMemoryPoolsSupported,
  cudaDevAttrComputeCapabilityMajor,
  cudaDevAttrComputeCapabilityMinor
};
enum cudaMemPoolAttr { cudaMemPoolAttrReleaseThreshold };
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
struct cudaDeviceProp {
  char name[256];
  int major, minor, multiProcessorCount;
};
inline cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int) {
  std::memset(p, 0, sizeof *p);
  std::strcpy(p->name, "CPU emulation of an sm_80 GPU");
  p->major = 8;
  p->minor = 0;
  p->multiProcessorCount = 4;
  return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int) { return cudaSuccess; }
inline cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int) {
  *v = a == cudaDevAttrComputeCapabilityMajor ? 8 : 0;  // no memory pools: plain cudaMalloc and cudaFree
  return cudaSuccess;
}
inline cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t*, int) { return cudaErrorInvalidValue; }
inline cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t, cudaMemPoolAttr, void*) { return cudaErrorInvalidValue; }
inline cudaError_t cudaMemPoolTrimTo(cudaMemPool_t, size_t) { return cudaErrorInvalidValue; }
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  static EmuStream stream;
  *s = &stream;
  return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) {  // every launch has finished already
  emu_trace("sync");
  return cudaSuccess;
}

// ---- memory: host memory of the size asked for, 256-byte aligned as cudaMalloc's, full of 0xFF bytes until written
inline cudaError_t cudaMalloc(void** p, size_t bytes) {
  emu_trace("malloc %zu", bytes);
  if (posix_memalign(p, 256, std::max<size_t>(bytes, 1)) != 0) return cudaErrorMemoryAllocation;
  std::memset(*p, 0xFF, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaFree(void* p) {
  emu_trace("free");
  std::free(p);
  return cudaSuccess;
}
inline cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t) { return cudaMalloc(p, bytes); }
inline cudaError_t cudaFreeAsync(void* p, cudaStream_t) { return cudaFree(p); }
inline cudaError_t cudaMemsetAsync(void* p, int v, size_t bytes, cudaStream_t = nullptr) {
  emu_trace("memset %zu", bytes);
  std::memset(p, v, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                                   cudaStream_t = nullptr) {
  static const char* const kinds[] = {"h2h", "h2d", "d2h", "d2d"};
  emu_trace("copy %s %zu", kinds[kind], bytes);
  if (bytes) std::memmove(dst, src, bytes);
  return cudaSuccess;
}

// ---- launches
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
template <class F>
void emu_kernel(dim3 grid, dim3 block, size_t smem, cudaStream_t, F body, const char* name) {
  const uint64_t threads = uint64_t{block.x} * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535 ||
      threads == 0 || threads > 1024 || block.z > 64 || smem > 48 * 1024) {
    emu_last_error = cudaErrorInvalidConfiguration;
    return;
  }
  emu_trace("launch %s", name);
  emu_launch({grid.x, grid.y, grid.z}, {block.x, block.y, block.z}, body);
}

// ---- cub: DeviceRadixSort::SortPairs, stable on bits [begin, end) of the keys
namespace cub {
struct DeviceRadixSort {
  template <class K, class V>
  static cudaError_t SortPairs(void* temp, size_t& temp_bytes, const K* keys_in, K* keys_out, const V* values_in,
                               V* values_out, int n, int begin_bit, int end_bit, cudaStream_t = nullptr) {
    if (!temp) {
      temp_bytes = 16;
      return cudaSuccess;
    }
    emu_trace("launch cub::DeviceRadixSort::SortPairs");
    const K mask = end_bit - begin_bit >= int(8 * sizeof(K)) ? ~K{0} : K((K{1} << (end_bit - begin_bit)) - 1);
    std::vector<int> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
      return ((keys_in[a] >> begin_bit) & mask) < ((keys_in[b] >> begin_bit) & mask);
    });
    std::vector<K> k(n);
    std::vector<V> v(n);
    for (int i = 0; i < n; ++i) k[i] = keys_in[order[i]], v[i] = values_in[order[i]];
    std::copy(k.begin(), k.end(), keys_out);
    std::copy(v.begin(), v.end(), values_out);
    return cudaSuccess;
  }
};
}  // namespace cub
