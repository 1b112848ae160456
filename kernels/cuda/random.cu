// Random family on CUDA: counter-based Philox4x32-10 with the same 64-bit counter and key as every backend, so
// the bits are identical; uniform and normal values are computed in double like the cpu kernels, then rounded.
#include "common.cuh"

namespace kiln {
namespace cuda {

__device__ inline uint4 philox(uint32_t c0, uint32_t c1, uint32_t k0, uint32_t k1) {
  uint32_t x0 = c0, x1 = c1, x2 = 0, x3 = 0;
  for (int r = 0; r < 10; ++r) {
    const uint32_t hi0 = __umulhi(0xd2511f53u, x0), lo0 = 0xd2511f53u * x0;
    const uint32_t hi1 = __umulhi(0xcd9e8d57u, x2), lo1 = 0xcd9e8d57u * x2;
    const uint32_t n0 = hi1 ^ x1 ^ k0, n2 = hi0 ^ x3 ^ k1;
    x1 = lo1;
    x3 = lo0;
    x0 = n0;
    x2 = n2;
    k0 += 0x9e3779b9u;
    k1 += 0xbb67ae85u;
  }
  return make_uint4(x0, x1, x2, x3);
}

struct RngArgs {
  uint32_t k0, k1;
  uint64_t ctr;
  int64_t n;
  double a, b;
  int kind;
  int32_t dto;
};

__global__ void random(RngArgs g, void* out) {
  const int64_t blk = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (blk * 4 >= g.n) return;
  const uint64_t c = g.ctr + static_cast<uint64_t>(blk);
  const uint4 u4 = philox(static_cast<uint32_t>(c), static_cast<uint32_t>(c >> 32), g.k0, g.k1);
  const uint32_t u[4] = {u4.x, u4.y, u4.z, u4.w};
  double z[4];
  if (g.kind == 1) {
    for (int p = 0; p < 2; ++p) {
      const double u1 = (static_cast<double>(u[2 * p]) + 1.0) * (1.0 / 4294967296.0);
      const double u2 = static_cast<double>(u[2 * p + 1]) * (1.0 / 4294967296.0);
      const double r = sqrt(-2.0 * log(u1)), th = 6.283185307179586 * u2;
      z[2 * p] = r * cos(th);
      z[2 * p + 1] = r * sin(th);
    }
  }
  for (int l = 0; l < 4 && blk * 4 + l < g.n; ++l) {
    const int64_t i = blk * 4 + l;
    if (g.kind == 0)
      static_cast<float*>(out)[i] =
          static_cast<float>(g.a + (g.b - g.a) * (static_cast<double>(u[l] >> 8) * (1.0 / 16777216.0)));
    else if (g.kind == 1)
      static_cast<float*>(out)[i] = static_cast<float>(g.a + g.b * z[l]);
    else {
      const uint64_t range = static_cast<uint64_t>(g.b - g.a);
      const int64_t v = static_cast<int64_t>(g.a) + static_cast<int64_t>((static_cast<uint64_t>(u[l]) * range) >> 32);
      store_i(out, g.dto, i, static_cast<int32_t>(v));
    }
  }
}

// every random op is the Philox key (ATTR_RNG_*) and then its distribution's two parameters
static_assert(ATTR_RANDOM_NORMAL_MEAN == ATTR_RANDOM_UNIFORM_LOW &&
              ATTR_RANDOM_NORMAL_STD == ATTR_RANDOM_UNIFORM_HIGH && ATTR_RANDOM_INT_LOW == ATTR_RANDOM_UNIFORM_LOW &&
              ATTR_RANDOM_INT_HIGH == ATTR_RANDOM_UNIFORM_HIGH);

static Status run(const TensorView& out, const double* at, int kind, const char* name) {
  const double p0 = at[ATTR_RANDOM_UNIFORM_LOW], p1 = at[ATTR_RANDOM_UNIFORM_HIGH];
  RngArgs g{static_cast<uint32_t>(at[ATTR_RNG_KEY0]),
            static_cast<uint32_t>(at[ATTR_RNG_KEY1]),
            static_cast<uint64_t>(at[ATTR_RNG_CTR_LO]) | (static_cast<uint64_t>(at[ATTR_RNG_CTR_HI]) << 32),
            out.numel(),
            p0,
            p1,
            kind,
            out.dtype};
  if (kind == 2) {
    KILN_REQUIRE(p1 > p0 && p1 - p0 <= 4294967296.0 && p0 >= -2147483648.0 && p1 <= 2147483648.0, ST_ARG,
                 "randomInt needs low < high within int32, got [", p0, ", ", p1, ")");
    KILN_REQUIRE(out.dtype == DT_INT32 || out.dtype == DT_FLOAT32, ST_DTYPE, name, " writes int32 or float32");
  } else {
    KILN_REQUIRE(out.dtype == DT_FLOAT32, ST_DTYPE, name, " writes float32");
  }
  if (g.n == 0) return Status::ok();
  random<<<blocks_for((g.n + 3) / 4), kThreads, 0, stream()>>>(
      g, static_cast<char*>(out.data) + out.offset * dt_size(out.dtype));
  return launched(name);
}

static Status k_random_uniform(const TensorView*, int, const TensorView& out, const double* at) {
  return run(out, at, 0, "randomUniform");
}
static Status k_random_normal(const TensorView*, int, const TensorView& out, const double* at) {
  return run(out, at, 1, "randomNormal");
}
static Status k_random_int(const TensorView*, int, const TensorView& out, const double* at) {
  return run(out, at, 2, "randomInt");
}

void register_random(KernelTable& t) {
  t.fn[OP_RANDOM_UNIFORM] = k_random_uniform;
  t.fn[OP_RANDOM_NORMAL] = k_random_normal;
  t.fn[OP_RANDOM_INT] = k_random_int;
}

}  // namespace cuda
}  // namespace kiln
