// The CUDA backend's runtime, in the optional library kiln_cuda.so (the CUDA runtime is linked statically):
// device discovery, one stream, a caching device allocator, host<->device copies, the kernel table filled by
// kernels/cuda/*.cu, and the device-side error flags. Every CUDA call's return code is checked and becomes a
// Status; a machine without a GPU or driver is reported, never fatal.
#include <cuda_runtime_api.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "kiln/cpu_common.h"
#include "kiln/cpu_dispatch.h"
#include "kiln/cublaslt.h"
#include "kiln/cuda_plugin.h"
#include "kiln/cuda_runtime.h"
#include "kiln/op_ids.h"

// Under AddressSanitizer (only the CPU emulation's sanitizer run builds this file so: test/cuda-emu.test.ts) a
// block holds ASan's poison past the bytes asked for and all of it while cached, so a kernel that reads past its
// tensor or a released buffer stops the run, though the block's size class has room
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define KILN_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define KILN_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define KILN_POISON(p, n) static_cast<void>(0)
#define KILN_UNPOISON(p, n) static_cast<void>(0)
#endif

namespace kiln {
namespace cuda {
#define KILN_CUDA_REGISTER_CALL(family) register_##family(*x);

namespace {
Status status(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return Status::ok();
  cudaGetLastError();  // clear a non-sticky error
  return fail(e == cudaErrorMemoryAllocation ? ST_OOM : ST_BACKEND,
              std::string("cuda: ") + what + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

struct Runtime {
  bool ok = false;
  std::string reason;
  std::string name;
  int cc_major = 0, cc_minor = 0, count = 0, device = 0, sms = 1;
  cudaStream_t stream = nullptr;
  DeviceFlags* flags = nullptr;
  std::mutex mu;  // the allocator's lists
  std::unordered_map<uint64_t, std::vector<void*>> free_lists;
  uint64_t cached = 0, limit = 0;
  // stream-ordered allocation from the device's default pool, which keeps what it is handed back (release
  // threshold raised from 0, so a miss after a sync does not map memory again); plain cudaMalloc/cudaFree where
  // the device has no memory pools (some vGPU and WSL set-ups)
  bool pools = false;
  cudaMemPool_t pool = nullptr;
};

Runtime& rt() {
  static Runtime* r = [] {
    auto* x = new Runtime();
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
      x->reason = std::string("no CUDA device: ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
      cudaGetLastError();
      return x;
    }
    if (count == 0) {
      x->reason = "no CUDA device: the driver reports 0 devices";
      return x;
    }
    x->count = count;
    // one device per process: KILN_CUDA_DEVICE, else the rank on this host under an MPI launcher (one GPU per
    // rank, as DDP wants), else device 0
    int dev = 0;
    for (const char* var : {"KILN_CUDA_DEVICE", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"}) {
      if (const char* v = std::getenv(var)) {
        dev = std::atoi(v) % count;
        break;
      }
    }
    x->device = dev;
    cudaDeviceProp prop{};
    if ((e = cudaGetDeviceProperties(&prop, dev)) != cudaSuccess || (e = cudaSetDevice(dev)) != cudaSuccess) {
      x->reason = "CUDA device " + std::to_string(dev) + " unusable: " + cudaGetErrorString(e);
      return x;
    }
    x->name = prop.name;
    x->cc_major = prop.major;
    x->cc_minor = prop.minor;
    x->sms = prop.multiProcessorCount > 0 ? prop.multiProcessorCount : 1;
    if (prop.major < 8) {  // sm_80 / sm_90 code only: PTX cannot be JIT-compiled down to an older GPU
      x->reason = "CUDA device " + x->name + " has compute capability " + std::to_string(prop.major) + "." +
                  std::to_string(prop.minor) + "; kiln's kernels are built for 8.0 and 9.0";
      return x;
    }
    if ((e = cudaStreamCreateWithFlags(&x->stream, cudaStreamNonBlocking)) != cudaSuccess ||
        (e = cudaMalloc(reinterpret_cast<void**>(&x->flags), sizeof(DeviceFlags))) != cudaSuccess ||
        (e = cudaMemsetAsync(x->flags, 0, sizeof(DeviceFlags), x->stream)) != cudaSuccess ||
        (e = cudaStreamSynchronize(x->stream)) != cudaSuccess) {  // on the work stream, done before any kernel
      x->reason = std::string("CUDA set-up failed: ") + cudaGetErrorString(e);
      return x;
    }
    int pools = 0;
    if (cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, dev) == cudaSuccess && pools &&
        cudaDeviceGetDefaultMemPool(&x->pool, dev) == cudaSuccess) {
      uint64_t keep = UINT64_MAX;
      x->pools = cudaMemPoolSetAttribute(x->pool, cudaMemPoolAttrReleaseThreshold, &keep) == cudaSuccess;
    }
    cudaGetLastError();
    uint64_t mb = 4096;
    if (const char* s = std::getenv("KILN_CUDA_CACHE_MB")) mb = std::strtoull(s, nullptr, 10);
    x->limit = mb << 20;
    x->ok = true;
    return x;
  }();
  return *r;
}

uint64_t size_class(uint64_t bytes) {
  uint64_t c = bytes < 256 ? 256 : ((bytes + 255) / 256) * 256;
  if (c <= (1u << 20)) {
    uint64_t p = 256;
    while (p < c) p <<= 1;
    return p;
  }
  return ((c + (1u << 20) - 1) >> 20) << 20;
}

/** kFlagMessages[k] (generated from DEVICE_FLAGS in src/ops/table.ts) with the recorded words filled in. */
std::string flag_message(int k, const DeviceFlags& f) {
  std::string m = kFlagMessages[k], out;
  for (size_t i = 0; i < m.size(); ++i) {
    const size_t close = m[i] == '{' ? m.find('}', i) : std::string::npos;
    if (close == std::string::npos) {
      out += m[i];
      continue;
    }
    const std::string key = m.substr(i + 1, close - i - 1);
    if (key == "pos")
      out += std::to_string(f.pos[k]);
    else if (key == "value")
      out += std::to_string(f.value[k]);
    else if (key == "bound")
      out += std::to_string(f.bound[k]);
    else if (key == "extra")
      out += std::to_string(f.extra[k]);
    else
      out += m.substr(i, close - i + 1);
    i = close;
  }
  return out;
}

/** Reads and clears the device error flags; a set flag becomes the user's ArgumentError. */
Status take_flags() {
  Runtime& r = rt();
  DeviceFlags f{};
  if (Status s =
          status(cudaMemcpyAsync(&f, r.flags, sizeof f, cudaMemcpyDeviceToHost, r.stream), "reading error flags");
      !s.good())
    return s;
  if (Status s = status(cudaStreamSynchronize(r.stream), "synchronize"); !s.good()) return s;
  for (int k = 0; k < FLAG_COUNT; ++k) {
    if (!f.set[k]) continue;
    cudaMemsetAsync(r.flags, 0, sizeof f, r.stream);
    return fail(ST_ARG, flag_message(k, f) + " (found on the GPU, at the next read)");
  }
  return Status::ok();
}
}  // namespace

cudaStream_t stream() { return rt().stream; }
const char* gemm_mode() {
  static const char* mode = [] {
    const char* e = std::getenv("KILN_CUDA_GEMM");
    return e && std::strcmp(e, "tf32") == 0 ? "tf32" : "fp32";
  }();
  return mode;
}
DeviceFlags* device_flags() { return rt().flags; }
int sm_count() { return rt().sms; }
bool ready() { return rt().ok; }

Status alloc(uint64_t bytes, void** p) {
  Runtime& r = rt();
  if (!r.ok) return fail(ST_BACKEND, "backend 'cuda' is not available: " + r.reason);
  const uint64_t cls = size_class(bytes);
  {
    std::lock_guard<std::mutex> lock(r.mu);
    auto it = r.free_lists.find(cls);
    if (it != r.free_lists.end() && !it->second.empty()) {
      *p = it->second.back();
      it->second.pop_back();
      r.cached -= cls;
      KILN_UNPOISON(*p, bytes);
      return Status::ok();
    }
  }
  const auto get = [&] { return r.pools ? cudaMallocAsync(p, cls, r.stream) : cudaMalloc(p, cls); };
  cudaError_t e = get();
  if (e == cudaErrorMemoryAllocation) {  // hand the cache back to the driver and try once more
    cudaGetLastError();
    empty_cache();
    e = get();
  }
  if (e == cudaSuccess) KILN_POISON(static_cast<char*>(*p) + bytes, cls - bytes);
  return status(e, "allocate device memory");
}

/** Frees p after the kernels queued before (cudaFree waits for the device where there are no pools). */
static void give_back(Runtime& r, void* p) {
  if (r.pools)
    cudaFreeAsync(p, r.stream);
  else
    cudaFree(p);
}

void release(void* p, uint64_t bytes) {
  Runtime& r = rt();
  if (!p || !r.ok) return;
  const uint64_t cls = size_class(bytes);
  std::lock_guard<std::mutex> lock(r.mu);
  if (r.cached + cls > r.limit) {
    KILN_UNPOISON(p, cls);
    give_back(r, p);
    return;
  }
  KILN_POISON(p, cls);
  r.free_lists[cls].push_back(p);  // reuse is stream-ordered too: one stream runs everything in order
  r.cached += cls;
}

uint64_t cached_bytes() {
  Runtime& r = rt();
  std::lock_guard<std::mutex> lock(r.mu);
  return r.cached;
}

void empty_cache() {
  Runtime& r = rt();
  if (!r.ok) return;
  std::lock_guard<std::mutex> lock(r.mu);
  for (auto& kv : r.free_lists)
    for (void* p : kv.second) {
      KILN_UNPOISON(p, kv.first);
      give_back(r, p);
    }
  r.free_lists.clear();
  r.cached = 0;
  if (r.pools && cudaStreamSynchronize(r.stream) == cudaSuccess)  // and the pool's memory to the driver
    cudaMemPoolTrimTo(r.pool, 0);
  cudaGetLastError();
}

Status scratch(uint64_t bytes, void** p) { return alloc(bytes, p); }
void release_scratch(void* p, uint64_t bytes) { release(p, bytes); }

Status to_device(void* dst, const void* src, uint64_t bytes) {
  Runtime& r = rt();
  if (!r.ok) return fail(ST_BACKEND, "backend 'cuda' is not available: " + r.reason);
  if (bytes == 0) return Status::ok();
  // pageable source: the copy is staged before the call returns, so the caller may reuse its memory at once
  return status(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, r.stream), "copy to device");
}

Status to_host(void* dst, const void* src, uint64_t bytes) {
  Runtime& r = rt();
  if (!r.ok) return fail(ST_BACKEND, "backend 'cuda' is not available: " + r.reason);
  if (bytes) {
    if (Status s = status(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, r.stream), "copy to host");
        !s.good())
      return s;
  }
  return take_flags();
}

Status synchronize() {
  if (!rt().ok) return Status::ok();
  return take_flags();
}

void* stream_handle() { return rt().ok ? rt().stream : nullptr; }

// The kernel table needs no device: it is filled once, so a build without a GPU can still list what it has.
KernelFn kernel_for(int op) {
  static const KernelTable* table = [] {
    auto* x = new KernelTable();
    KILN_FAMILIES(KILN_CUDA_REGISTER_CALL)
    return x;
  }();
  if (op < 0 || op >= OP_COUNT) return nullptr;
  return table->fn[op];
}
}  // namespace cuda

namespace {
void info(CudaInfo* out) {
  CudaInfo info;
  info.compiled = true;
  cuda::Runtime& r = cuda::rt();
  info.device_count = r.count;
  info.name = r.name;
  info.cc_major = r.cc_major;
  info.cc_minor = r.cc_minor;
  info.available = r.ok;
  info.matmul = cuda::gemm_mode();
  cuda::cublaslt_info(&info.cublaslt, &info.cublaslt_reason);
  cuda::wgmma_info(&info.wgmma, &info.wgmma_reason);
  info.reason = r.ok ? "" : r.reason;
  *out = info;
}
}  // namespace
}  // namespace kiln

// The one symbol kiln_cuda.so exports: what kiln.node's loader (native/cuda/plugin_loader.cc) calls.
extern "C" __attribute__((visibility("default"))) const kiln::cuda::Plugin* kiln_cuda_plugin() {
  using namespace kiln::cuda;  // NOLINT(build/namespaces)
  static const Plugin table = {
      kPluginAbi,
      kiln::OP_COUNT,
      sizeof(kiln::TensorView),
      sizeof(kiln::Status),
      sizeof(kiln::CudaInfo),
      kiln::info,
      ready,
      alloc,
      release,
      to_device,
      to_host,
      synchronize,
      kernel_for,
      cached_bytes,
      empty_cache,
      stream_handle,
      nccl_status,
      nccl_unique_id,
      nccl_init,
      nccl_allreduce,
      nccl_broadcast,
  };
  return &table;
}
