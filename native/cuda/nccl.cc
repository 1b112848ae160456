// NCCL for kn.distributed, opened at run time: dlopen("libnccl.so.2") (or KILN_NCCL_PATH), so kiln builds and
// loads without NCCL and uses it where it is installed. Only the handful of entry points below are used; their
// types are declared here from NCCL's stable C ABI (nccl.h, 2.x) rather than taken from a header at build time.
#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "kiln/cuda_runtime.h"

namespace kiln {
namespace cuda {
namespace {

// nccl.h: ncclResult_t, ncclDataType_t, ncclRedOp_t are C enums (int); ncclUniqueId is 128 opaque bytes
using ncclComm_t = void*;
struct ncclUniqueId {
  char internal[128];
};
enum NcclType : int { kInt32 = 2, kFloat16 = 6, kFloat32 = 7, kFloat64 = 8, kBfloat16 = 9 };
enum NcclOp : int { kSum = 0, kMax = 2, kMin = 3, kAvg = 4 };

struct Nccl {
  void* lib = nullptr;
  std::string reason;
  int version = 0;
  int (*GetVersion)(int*) = nullptr;
  int (*GetUniqueId)(ncclUniqueId*) = nullptr;
  int (*CommInitRank)(ncclComm_t*, int, ncclUniqueId, int) = nullptr;
  int (*AllReduce)(const void*, void*, size_t, int, int, ncclComm_t, cudaStream_t) = nullptr;
  int (*Broadcast)(const void*, void*, size_t, int, int, ncclComm_t, cudaStream_t) = nullptr;
  const char* (*GetErrorString)(int) = nullptr;
  ncclComm_t comm = nullptr;
  int size = 0;
};

Nccl& nccl() {
  static Nccl* n = [] {
    auto* x = new Nccl();
    const char* path = std::getenv("KILN_NCCL_PATH");
    x->lib = dlopen(path ? path : "libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!x->lib) {
      const char* e = dlerror();
      x->reason = std::string("NCCL not found (") + (e ? e : "dlopen failed") +
                  "); device gradients are reduced through host memory and MPI";
      return x;
    }
    auto sym = [x](const char* name) { return dlsym(x->lib, name); };
    x->GetVersion = reinterpret_cast<int (*)(int*)>(sym("ncclGetVersion"));
    x->GetUniqueId = reinterpret_cast<int (*)(ncclUniqueId*)>(sym("ncclGetUniqueId"));
    x->CommInitRank = reinterpret_cast<int (*)(ncclComm_t*, int, ncclUniqueId, int)>(sym("ncclCommInitRank"));
    x->AllReduce =
        reinterpret_cast<int (*)(const void*, void*, size_t, int, int, ncclComm_t, cudaStream_t)>(sym("ncclAllReduce"));
    x->Broadcast =
        reinterpret_cast<int (*)(const void*, void*, size_t, int, int, ncclComm_t, cudaStream_t)>(sym("ncclBroadcast"));
    x->GetErrorString = reinterpret_cast<const char* (*)(int)>(sym("ncclGetErrorString"));
    if (!x->GetVersion || !x->GetUniqueId || !x->CommInitRank || !x->AllReduce || !x->Broadcast || !x->GetErrorString) {
      x->reason = "libnccl.so.2 lacks an entry point kiln needs (NCCL 2.10 or newer is required)";
      return x;
    }
    x->GetVersion(&x->version);
    if (x->version < 21000) x->reason = "NCCL " + std::to_string(x->version) + " is too old (2.10 or newer)";
    return x;
  }();
  return *n;
}

Status nccl_fail(const char* what, int rc) {
  return fail(ST_BACKEND, std::string("nccl: ") + what + ": " + nccl().GetErrorString(rc));
}

bool nccl_type(int dtype, int& out) {
  switch (dtype) {
    case DT_FLOAT32: out = kFloat32; return true;
    case DT_INT32: out = kInt32; return true;
    case DT_FLOAT16: out = kFloat16; return true;
    case DT_BFLOAT16: out = kBfloat16; return true;
    default: return false;
  }
}
}  // namespace

Status nccl_status() {
  if (!ready()) return fail(ST_BACKEND, "no CUDA device, so no NCCL");
  Nccl& n = nccl();
  if (!n.reason.empty()) return fail(ST_BACKEND, n.reason);
  return Status::ok();
}

Status nccl_unique_id(uint8_t out[128]) {
  Status st = nccl_status();
  if (!st.good()) return st;
  ncclUniqueId id;
  const int rc = nccl().GetUniqueId(&id);
  if (rc != 0) return nccl_fail("ncclGetUniqueId", rc);
  std::memcpy(out, id.internal, 128);
  return Status::ok();
}

Status nccl_init(int rank, int size, const uint8_t id_bytes[128]) {
  Status st = nccl_status();
  if (!st.good()) return st;
  Nccl& n = nccl();
  if (n.comm) return fail(ST_ARG, "NCCL is already initialized in this process");
  if (size < 1 || rank < 0 || rank >= size) return fail(ST_ARG, "nccl_init: rank must be in [0, size)");
  ncclUniqueId id;
  std::memcpy(id.internal, id_bytes, 128);
  const int rc = n.CommInitRank(&n.comm, size, id, rank);
  if (rc != 0) {
    n.comm = nullptr;
    return nccl_fail("ncclCommInitRank", rc);
  }
  n.size = size;
  return Status::ok();
}

Status nccl_allreduce(void* p, uint64_t count, int dtype, int op) {
  Nccl& n = nccl();
  if (!n.comm) return fail(ST_ARG, "NCCL is not initialized (kn.distributed sets it up for cuda models)");
  int t = 0;
  if (!nccl_type(dtype, t)) return fail(ST_DTYPE, "NCCL reduces float32, float16, bfloat16 and int32");
  if (op == 1 && t == kInt32) return fail(ST_DTYPE, "allreduce 'mean' needs floating-point values");
  const int nop = op == 1 ? kAvg : op == 2 ? kMax : op == 3 ? kMin : kSum;
  const int rc = n.AllReduce(p, p, count, t, nop, n.comm, static_cast<cudaStream_t>(stream_handle()));
  return rc == 0 ? Status::ok() : nccl_fail("ncclAllReduce", rc);
}

Status nccl_broadcast(void* p, uint64_t count, int dtype, int root) {
  Nccl& n = nccl();
  if (!n.comm) return fail(ST_ARG, "NCCL is not initialized (kn.distributed sets it up for cuda models)");
  int t = 0;
  if (!nccl_type(dtype, t)) return fail(ST_DTYPE, "NCCL broadcasts float32, float16, bfloat16 and int32");
  if (root < 0 || root >= n.size) return fail(ST_ARG, "nccl_broadcast: root is not a rank");
  const int rc = n.Broadcast(p, p, count, t, root, n.comm, static_cast<cudaStream_t>(stream_handle()));
  return rc == 0 ? Status::ok() : nccl_fail("ncclBroadcast", rc);
}

}  // namespace cuda
}  // namespace kiln
