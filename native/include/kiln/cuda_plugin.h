// The boundary between kiln.node and the optional CUDA library kiln_cuda.so (built by `kiln build --cuda`).
// kiln.node never links CUDA: native/cuda/plugin_loader.cc opens kiln_cuda.so with dlopen when the JS layer names
// it, checks the table below, and forwards every kiln::cuda call to it; without it each call fails with the
// reason. kiln_cuda.so (native/cuda/device.cc, nccl.cc and kernels/cuda/*.cu) exports one C symbol,
// kiln_cuda_plugin, returning the table.
//
// Both sides are compiled from the same headers; the table carries what must agree for that to be safe (the
// ABI version, the op count and the sizes of the structs that cross), and the loader refuses a mismatch.
#pragma once
#include <cstdint>

#include "kiln/cpu_dispatch.h"
#include "kiln/op_ids.h"
#include "kiln/tensor_view.h"

namespace kiln {
namespace cuda {
/** Bump when a field below changes meaning or order. */
constexpr uint32_t kPluginAbi = 3;

struct Plugin {
  uint32_t abi;
  uint32_t op_count;
  uint32_t view_size;    // sizeof(TensorView)
  uint32_t status_size;  // sizeof(Status)
  uint32_t info_size;    // sizeof(CudaInfo)
  void (*info)(CudaInfo* out);
  bool (*ready)();
  Status (*alloc)(uint64_t bytes, void** p);
  void (*release)(void* p, uint64_t bytes);
  Status (*to_device)(void* dst, const void* src, uint64_t bytes);
  Status (*to_host)(void* dst, const void* src, uint64_t bytes);
  Status (*synchronize)();
  KernelFn (*kernel_for)(int op);
  uint64_t (*cached_bytes)();
  void (*empty_cache)();
  void* (*stream_handle)();
  Status (*nccl_status)();
  Status (*nccl_unique_id)(uint8_t out[128]);
  Status (*nccl_init)(int rank, int size, const uint8_t id[128]);
  Status (*nccl_allreduce)(void* p, uint64_t count, int dtype, int op);
  Status (*nccl_broadcast)(void* p, uint64_t count, int dtype, int root);
};

/** The name kiln_cuda.so exports. */
constexpr const char* kPluginSymbol = "kiln_cuda_plugin";
using PluginEntry = const Plugin* (*)();

/** kiln.node side: opens the library at `path` ("" when none was built). Returns "" when loaded, else why not;
 * the reason is also what cuda_info() reports from then on. */
std::string load_plugin(const std::string& path);
}  // namespace cuda
}  // namespace kiln
