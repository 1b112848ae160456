// What the N-API layer (native/addon.cc) uses of the CUDA backend. No CUDA types: it is implemented by
// native/cuda/device.cc when kiln is built with CUDA, and by native/cuda/no_cuda.cc (every call fails with a
// clear BackendError status) otherwise.
#pragma once
#include <cstdint>

#include "kiln/tensor_view.h"

namespace kiln {
struct KernelTable;
namespace cuda {
/** Error flags the kernels set on bad data (kind k: a gather or scatterAdd index, a crossEntropy label, NaN into
 * int8 quantization): the first bad (position, value) of each kind; read and cleared at every read and sync. */
struct DeviceFlags {
  unsigned set[FLAG_COUNT];
  unsigned pos[FLAG_COUNT];
  int value[FLAG_COUNT];
  unsigned bound[FLAG_COUNT];
  unsigned extra[FLAG_COUNT];
};

// one kernel file per op family in kernels/cuda/ (KILN_FAMILIES, generated), each filling its ops into the table
#define KILN_CUDA_DECLARE(family) void register_##family(KernelTable& t);
KILN_FAMILIES(KILN_CUDA_DECLARE)

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
/** kiln's CUDA stream (a cudaStream_t), or null without a device. */
void* stream_handle();

// NCCL (native/cuda/nccl.cc): opened at run time with dlopen("libnccl.so.2"), so kiln needs no NCCL to build or
// load; kn.distributed uses it to reduce gradients that live on the device. One communicator per process.
/** Ok when NCCL was found and a device is ready; otherwise why not. */
Status nccl_status();
/** A new NCCL unique id (128 bytes), made by rank 0 and sent to the others over MPI. */
Status nccl_unique_id(uint8_t out[128]);
/** Joins the communicator of `size` ranks named by `id` (blocks until every rank has joined). */
Status nccl_init(int rank, int size, const uint8_t id[128]);
/** In-place allreduce of `count` elements of device memory on kiln's stream; op: 0 sum, 1 mean, 2 max, 3 min. */
Status nccl_allreduce(void* p, uint64_t count, int dtype, int op);
/** In-place broadcast from `root` on kiln's stream. */
Status nccl_broadcast(void* p, uint64_t count, int dtype, int root);
}  // namespace cuda
}  // namespace kiln
