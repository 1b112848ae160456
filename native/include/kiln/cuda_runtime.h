// What the N-API layer (native/addon.cc) uses of the CUDA backend. No CUDA types: it is implemented by
// native/cuda/device.cc when kiln is built with CUDA, and by native/cuda/no_cuda.cc (every call fails with a
// clear BackendError status) otherwise.
#pragma once
#include <cstdint>

#include "kiln/tensor_view.h"

namespace kiln {
namespace cuda {
/** True when a device was found and the kernels are built. */
bool ready();
/** Device memory from the caching allocator (never zeroed: every kernel writes its whole output). */
Status alloc(uint64_t bytes, void** p);
void release(void* p, uint64_t bytes);
Status to_device(void* dst, const void* src, uint64_t bytes);
/** Waits for queued kernels, copies back, and reports errors the kernels flagged (an index out of range). */
Status to_host(void* dst, const void* src, uint64_t bytes);
Status synchronize();
/** The CUDA kernel of an op, or null (known without a device; only buffers on a device ever reach one). */
KernelFn kernel_for(int op);
/** Bytes the allocator keeps for reuse, and a way to hand them back. */
uint64_t cached_bytes();
void empty_cache();
}  // namespace cuda
}  // namespace kiln
