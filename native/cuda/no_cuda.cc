// Built when no CUDA compiler was found (or KILN_CUDA=OFF): the cuda backend reports why it is missing, and
// every CUDA entry point fails with that reason.
#include "kiln/cpu_dispatch.h"
#include "kiln/cuda_runtime.h"

namespace kiln {
static const char* kNoCuda = "kiln was built without CUDA (no CUDA compiler found at build time, or KILN_CUDA=OFF)";

CudaInfo cuda_info() {
  CudaInfo info;
  info.compiled = false;
  info.available = false;
  info.reason = kNoCuda;
  return info;
}

namespace cuda {
bool ready() { return false; }
Status alloc(uint64_t, void**) { return fail(ST_BACKEND, kNoCuda); }
void release(void*, uint64_t) {}
Status to_device(void*, const void*, uint64_t) { return fail(ST_BACKEND, kNoCuda); }
Status to_host(void*, const void*, uint64_t) { return fail(ST_BACKEND, kNoCuda); }
Status synchronize() { return Status::ok(); }
KernelFn kernel_for(int) { return nullptr; }
uint64_t cached_bytes() { return 0; }
void empty_cache() {}
void* stream_handle() { return nullptr; }
Status nccl_status() { return fail(ST_BACKEND, kNoCuda); }
Status nccl_unique_id(uint8_t*) { return fail(ST_BACKEND, kNoCuda); }
Status nccl_init(int, int, const uint8_t*) { return fail(ST_BACKEND, kNoCuda); }
Status nccl_allreduce(void*, uint64_t, int, int) { return fail(ST_BACKEND, kNoCuda); }
Status nccl_broadcast(void*, uint64_t, int, int) { return fail(ST_BACKEND, kNoCuda); }
}  // namespace cuda
}  // namespace kiln
