// kiln.node's side of the CUDA backend. The kernels live in the optional library kiln_cuda.so (built by
// `kiln build --cuda`, never by a plain install), opened here with dlopen when the JS layer names it; see
// kiln/cuda_plugin.h. Without it, or when it cannot be opened or does not match, every CUDA entry point fails with
// the reason, and cuda_info() reports it: the backend is "not available", never a crash.
#include <dlfcn.h>

#include <string>

#include "kiln/cpu_dispatch.h"
#include "kiln/cuda_plugin.h"
#include "kiln/cuda_runtime.h"

namespace kiln {
namespace cuda {
namespace {
const Plugin* plugin = nullptr;
std::string reason =  // NOLINT(runtime/string): set once, before any use, from the JS thread
    "kiln was installed without its CUDA library (kiln_cuda.so); build it with 'npx kiln build --cuda' "
    "(needs nvcc, CUDA 12 or 13)";

Status missing() { return fail(ST_BACKEND, "backend 'cuda' is not available: " + reason); }
}  // namespace

std::string load_plugin(const std::string& path) {
  if (plugin) return "";
  if (path.empty()) return reason;
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* e = dlerror();
    reason = "kiln_cuda.so could not be opened (" + std::string(e ? e : "unknown error") +
             "); rebuild it with 'npx kiln build --cuda'";
    return reason;
  }
  auto entry = reinterpret_cast<PluginEntry>(dlsym(h, kPluginSymbol));
  const Plugin* p = entry ? entry() : nullptr;
  if (!p) {
    reason = path + " is not kiln's CUDA library (no " + kPluginSymbol + " symbol)";
  } else if (p->abi != kPluginAbi || p->op_count != OP_COUNT || p->view_size != sizeof(TensorView) ||
             p->status_size != sizeof(Status) || p->info_size != sizeof(CudaInfo)) {
    reason = path +
             " was built from a different kiln version than kiln.node (its op table or interface differs); "
             "rebuild it with 'npx kiln build --cuda'";
  } else {
    plugin = p;  // kept open for the life of the process, like every addon
    return "";
  }
  dlclose(h);
  return reason;
}

bool ready() { return plugin && plugin->ready(); }
Status alloc(uint64_t bytes, void** p) { return plugin ? plugin->alloc(bytes, p) : missing(); }
void release(void* p, uint64_t bytes) {
  if (plugin) plugin->release(p, bytes);
}
Status to_device(void* dst, const void* src, uint64_t bytes) {
  return plugin ? plugin->to_device(dst, src, bytes) : missing();
}
Status to_host(void* dst, const void* src, uint64_t bytes) {
  return plugin ? plugin->to_host(dst, src, bytes) : missing();
}
Status synchronize() { return plugin ? plugin->synchronize() : Status::ok(); }
KernelFn kernel_for(int op) { return plugin ? plugin->kernel_for(op) : nullptr; }
uint64_t cached_bytes() { return plugin ? plugin->cached_bytes() : 0; }
void empty_cache() {
  if (plugin) plugin->empty_cache();
}
void* stream_handle() { return plugin ? plugin->stream_handle() : nullptr; }
Status nccl_status() { return plugin ? plugin->nccl_status() : missing(); }
Status nccl_unique_id(uint8_t out[128]) { return plugin ? plugin->nccl_unique_id(out) : missing(); }
Status nccl_init(int rank, int size, const uint8_t id[128]) {
  return plugin ? plugin->nccl_init(rank, size, id) : missing();
}
Status nccl_allreduce(void* p, uint64_t count, int dtype, int op) {
  return plugin ? plugin->nccl_allreduce(p, count, dtype, op) : missing();
}
Status nccl_broadcast(void* p, uint64_t count, int dtype, int root) {
  return plugin ? plugin->nccl_broadcast(p, count, dtype, root) : missing();
}
}  // namespace cuda

CudaInfo cuda_info() {
  CudaInfo info;
  if (cuda::plugin) {
    cuda::plugin->info(&info);
  } else {
    info.compiled = false;
    info.available = false;
    info.reason = cuda::reason;
  }
  return info;
}
}  // namespace kiln
