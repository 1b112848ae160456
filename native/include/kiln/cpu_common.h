// Shared by every CPU kernel file, outside the ISA passes: thread pool, kernel table, validation helpers.
#pragma once
#include <cmath>
#include <cstdint>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "kiln/op_ids.h"
#include "kiln/tensor_view.h"

namespace kiln {

// Runs fn(begin, end) over [0, n) in chunks of at least `grain` on the pool. Nested calls run inline.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);
int num_threads();
void set_num_threads(int n);

template <class... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

#define KILN_REQUIRE(cond, code, ...)                                   \
  do {                                                                  \
    if (!(cond)) return ::kiln::fail((code), ::kiln::cat(__VA_ARGS__)); \
  } while (0)

inline bool same_shape(const TensorView& a, const TensorView& b) {
  if (a.ndim != b.ndim) return false;
  for (int i = 0; i < a.ndim; ++i)
    if (a.shape[i] != b.shape[i]) return false;
  return true;
}

// The optimizer steps' inputs [first, first + count): contiguous float32 of the parameter's (input first's) shape.
// One check for the cpu and cuda backends, so both refuse with the same error and message.
inline Status check_same_params(const TensorView* in, int first, int count, const char* op) {
  for (int i = first; i < first + count; ++i) {
    KILN_REQUIRE(in[i].dtype == DT_FLOAT32, ST_DTYPE, op, ": input ", i, " must be float32");
    KILN_REQUIRE(in[i].contiguous(), ST_ARG, op, ": input ", i, " must be contiguous");
    KILN_REQUIRE(same_shape(in[i], in[first]), ST_SHAPE, op, ": input ", i, " has shape ", shape_str(in[i]),
                 " but the parameter has shape ", shape_str(in[first]));
  }
  return Status::ok();
}

// Kernel tables, one per instruction set. Each family file fills its ops in each pass.
// fma_loop(iters): `iters` rounds of independent FMA chains in this ISA's widest vectors; returns the float
// operations done (the peak measurement behind addon.peakFlops, which profiles compare achieved GFLOP/s to).
using FmaLoopFn = double (*)(int64_t iters);
struct KernelTable {
  KernelFn fn[OP_COUNT] = {};
  FmaLoopFn fma_loop = nullptr;
};

}  // namespace kiln

// KILN_FAMILIES (the family list) is generated into kiln/tables.h from src/ops/table.ts.
#define KILN_DECLARE_REGISTER(family) void register_##family(::kiln::KernelTable& t);
namespace kiln {
namespace scalar {
KILN_FAMILIES(KILN_DECLARE_REGISTER)
}
#if defined(__x86_64__)
namespace avx2 {
KILN_FAMILIES(KILN_DECLARE_REGISTER)
}
namespace avx512 {
KILN_FAMILIES(KILN_DECLARE_REGISTER)
}
#endif
}  // namespace kiln
