// NCCL on the CPU emulation: the entry points native/cuda/nccl.cc opens, with the semantics NVIDIA's NCCL
// documentation gives them, between processes on one machine. test/emulate.ts builds it as a shared library
// beside the emulated kiln_cuda.so, and test/cuda-emu.test.ts opens it as NCCL (KILN_NCCL_PATH=<its path>) in a
// 2-rank `kiln launch` job, so kn.distributed's NCCL path (the unique id carried by MPI, one communicator per
// process, DistributedDataParallel's device buckets reduced in place on kiln's stream) runs without two GPUs.
//
// The communicator is a POSIX shared-memory segment named by the unique id: a header, a barrier, and one slot per
// rank. A collective puts each rank's data (and what it was called with) in its slot; after a barrier every rank
// checks that all called the same collective with the same count, type, operation and root (real NCCL would
// hang or corrupt memory otherwise: here it is ncclInvalidUsage), then computes the result from the slots in rank
// order, so every rank gets the same bits; a second barrier frees the slots. Each refusal is written, with what
// it was, to the file KILN_EMU_NCCL_LOG names, at exit, with the number of collectives run.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>

#include "emu_log.h"
#include "kiln/tensor_view.h"

namespace {
constexpr int kSuccess = 0, kInvalidArgument = 4, kInvalidUsage = 5, kSystemError = 2;
constexpr int kInt32 = 2, kFloat16 = 6, kFloat32 = 7, kFloat64 = 8, kBfloat16 = 9;  // ncclDataType_t
constexpr int kSum = 0, kProd = 1, kMax = 2, kMin = 3, kAvg = 4;                    // ncclRedOp_t
constexpr int kMaxRanks = 8;
struct UniqueId {  // ncclUniqueId: 128 opaque bytes, passed by value to ncclCommInitRank
  char internal[128];
};
constexpr uint64_t kSlotBytes = uint64_t{64} << 20;  // per rank; the segment is sparse, so untouched pages cost nothing

struct Call {  // what a rank called: every rank's must match
  int32_t kind, type, op, root;
  uint64_t count, seq;
};
struct Header {
  std::atomic<uint32_t> joined;
  std::atomic<uint32_t> arrived;
  std::atomic<uint32_t> phase;
  int32_t size;
  Call calls[kMaxRanks];
};
struct Comm {
  Header* h = nullptr;
  char* slots = nullptr;
  int rank = 0, size = 0;
  uint64_t seq = 0;
};

EmuLog logged("KILN_EMU_NCCL_LOG", {"collectives", "allreduce", "broadcast"});
int refuse(int code, const std::string& what) { return logged.refuse(code, what); }

/** Every rank arrives before any goes on (sense by phase); false after a minute: a rank that never came. */
bool barrier(Comm& c) {
  const uint32_t phase = c.h->phase.load();
  if (c.h->arrived.fetch_add(1) + 1 == static_cast<uint32_t>(c.size)) {
    c.h->arrived.store(0);
    c.h->phase.store(phase + 1);
    return true;
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (c.h->phase.load() == phase) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

size_t type_bytes(int t) {
  switch (t) {
    case kInt32:
    case kFloat32: return 4;
    case kFloat16:
    case kBfloat16: return 2;
    case kFloat64: return 8;
    default: return 0;
  }
}
double load(int t, const char* p, uint64_t i) {
  switch (t) {
    case kInt32: return reinterpret_cast<const int32_t*>(p)[i];
    case kFloat16: return kiln::half_to_float(reinterpret_cast<const uint16_t*>(p)[i]);
    case kBfloat16: return kiln::bf16_to_float(reinterpret_cast<const uint16_t*>(p)[i]);
    case kFloat64: return reinterpret_cast<const double*>(p)[i];
    default: return reinterpret_cast<const float*>(p)[i];
  }
}
void store(int t, char* p, uint64_t i, double v) {
  switch (t) {
    case kInt32: reinterpret_cast<int32_t*>(p)[i] = static_cast<int32_t>(v); break;
    case kFloat16: reinterpret_cast<uint16_t*>(p)[i] = kiln::float_to_half(static_cast<float>(v)); break;
    case kBfloat16: reinterpret_cast<uint16_t*>(p)[i] = kiln::float_to_bf16(static_cast<float>(v)); break;
    case kFloat64: reinterpret_cast<double*>(p)[i] = v; break;
    default: reinterpret_cast<float*>(p)[i] = static_cast<float>(v); break;
  }
}

/** One collective: this rank's data into its slot, a barrier, the calls compared; then `result` reads the slots. */
template <class F>
int collective(Comm* c, Call call, const void* send, F result) {
  if (!c || !c->h) return refuse(kInvalidArgument, "a collective on a communicator that was never initialized");
  const size_t el = type_bytes(call.type);
  if (el == 0) return refuse(kInvalidArgument, "data type " + std::to_string(call.type));
  if (call.count * el > kSlotBytes) return refuse(kInvalidArgument, "more data than the emulation's slot holds");
  call.seq = ++c->seq;
  c->h->calls[c->rank] = call;
  if (send) std::memcpy(c->slots + c->rank * kSlotBytes, send, call.count * el);
  if (!barrier(*c)) return refuse(kSystemError, "a rank never reached collective " + std::to_string(call.seq));
  for (int r = 0; r < c->size; ++r) {
    const Call& o = c->h->calls[r];
    if (std::memcmp(&o, &call, sizeof call) != 0) {
      barrier(*c);
      return refuse(kInvalidUsage, "rank " + std::to_string(r) + " called collective " + std::to_string(o.seq) +
                                       " (kind " + std::to_string(o.kind) + ", " + std::to_string(o.count) +
                                       " of type " + std::to_string(o.type) + ") where rank " +
                                       std::to_string(c->rank) + " called collective " + std::to_string(call.seq) +
                                       " (kind " + std::to_string(call.kind) + ", " + std::to_string(call.count) +
                                       " of type " + std::to_string(call.type) + ")");
    }
  }
  result();
  if (!barrier(*c)) return refuse(kSystemError, "a rank never left collective " + std::to_string(call.seq));
  logged.count({true, call.kind == 0, call.kind == 1});
  return kSuccess;
}
}  // namespace

extern "C" {
int ncclGetVersion(int* v) {
  *v = 22304;  // 2.23.4
  return kSuccess;
}
const char* ncclGetErrorString(int rc) {
  switch (rc) {
    case kSuccess: return "no error";
    case kSystemError: return "unhandled system error (a rank of the emulated communicator did not arrive)";
    case kInvalidArgument: return "invalid argument";
    case kInvalidUsage: return "invalid usage (the ranks called different collectives)";
  }
  return "unknown result code";
}
int ncclGetUniqueId(UniqueId* id) {
  std::memset(id->internal, 0, sizeof id->internal);
  std::random_device rd;
  std::snprintf(id->internal, sizeof id->internal, "/kiln-nccl-emu-%d-%08x%08x", static_cast<int>(getpid()), rd(),
                rd());
  return kSuccess;
}
int ncclCommInitRank(void** comm, int size, UniqueId id, int rank) {
  *comm = nullptr;
  if (size < 1 || size > kMaxRanks || rank < 0 || rank >= size)
    return refuse(kInvalidArgument, "ncclCommInitRank: rank " + std::to_string(rank) + " of " + std::to_string(size));
  if (std::strncmp(id.internal, "/kiln-nccl-emu-", 15) != 0)
    return refuse(kInvalidArgument, "ncclCommInitRank: a unique id ncclGetUniqueId did not make");
  char name[128];
  std::memcpy(name, id.internal, 127);
  name[127] = 0;
  const int fd = shm_open(name, O_RDWR | O_CREAT, 0600);
  if (fd < 0) return refuse(kSystemError, std::string("shm_open ") + name);
  const uint64_t bytes = 4096 + kSlotBytes * size;
  if (ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    close(fd);
    return refuse(kSystemError, "ftruncate of the communicator's segment");
  }
  void* m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (m == MAP_FAILED) return refuse(kSystemError, "mmap of the communicator's segment");
  auto* c = new Comm();
  c->h = static_cast<Header*>(m);  // a new segment is zero: no one joined, no one arrived, phase 0
  c->slots = static_cast<char*>(m) + 4096;
  c->rank = rank;
  c->size = size;
  c->h->joined.fetch_add(1);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (c->h->joined.load() < static_cast<uint32_t>(size)) {  // ncclCommInitRank blocks until every rank has come
    if (std::chrono::steady_clock::now() > deadline) return refuse(kSystemError, "ncclCommInitRank: ranks missing");
    std::this_thread::yield();
  }
  if (!barrier(*c)) return refuse(kSystemError, "ncclCommInitRank: ranks missing");
  if (rank == 0) shm_unlink(name);  // every rank has it mapped: the name can go
  *comm = c;
  return kSuccess;
}
int ncclAllReduce(const void* send, void* recv, size_t count, int type, int op, void* comm, void* /*stream*/) {
  auto* c = static_cast<Comm*>(comm);
  if (op < kSum || op > kAvg) return refuse(kInvalidArgument, "reduction " + std::to_string(op));
  if (op == kAvg && type == kInt32) return refuse(kInvalidArgument, "ncclAvg of int32");
  // ncclAvg of floating types is NCCL's pre-multiplied sum: each rank's value times 1/n in the element type, summed
  const double scale = type == kFloat32 ? static_cast<float>(1.0 / c->size) : 1.0 / c->size;
  const auto term = [&](double x) {
    if (op != kAvg) return x;
    return type == kFloat32 ? double(static_cast<float>(x) * static_cast<float>(scale)) : x * scale;
  };
  return collective(c, {0, type, op, 0, count, 0}, send, [&] {
    for (uint64_t i = 0; i < count; ++i) {
      double v = term(load(type, c->slots, i));
      for (int r = 1; r < c->size; ++r) {
        const double x = term(load(type, c->slots + r * kSlotBytes, i));
        v = op == kMax ? std::max(v, x) : op == kMin ? std::min(v, x) : op == kProd ? v * x : v + x;
        if (type == kFloat32) v = static_cast<float>(v);  // the sum as float32 adds it, rank by rank
      }
      store(type, static_cast<char*>(recv), i, v);
    }
  });
}
int ncclBroadcast(const void* send, void* recv, size_t count, int type, int root, void* comm, void* /*stream*/) {
  auto* c = static_cast<Comm*>(comm);
  if (!c || root < 0 || root >= c->size) return refuse(kInvalidArgument, "broadcast root " + std::to_string(root));
  const bool mine = c->rank == root;
  return collective(c, {1, type, 0, root, count, 0}, mine ? send : nullptr,
                    [&] { std::memmove(recv, c->slots + root * kSlotBytes, count * type_bytes(type)); });
}
}  // extern "C"
