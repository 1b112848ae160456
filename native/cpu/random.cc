// Counter-based random numbers (Philox4x32-10, Salmon et al. 2011). Element i of a request uses counter
// (ctr + i/4) and lane i%4, so any backend that implements the same function gives the same numbers
// (src/backends/js/random.ts is the reference).
#ifndef KILN_ISA
#include "kiln/cpu_common.h"
#define KILN_ISA_FILE "cpu/random.cc"
#include "kiln/isa_passes.h"
#else
#include "kiln/isa_helpers.inl"

namespace rng {

static inline void philox(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1,
                          uint32_t out[4]) {
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
    const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p1);
    c3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

struct Key {
  uint32_t k0, k1;
  uint64_t ctr;
};

static Key read_key(const double* a) {
  return Key{static_cast<uint32_t>(a[ATTR_RNG_KEY0]), static_cast<uint32_t>(a[ATTR_RNG_KEY1]),
             static_cast<uint64_t>(a[ATTR_RNG_CTR_LO]) | (static_cast<uint64_t>(a[ATTR_RNG_CTR_HI]) << 32)};
}

// calls f(i, u32[4]) for each block of four elements starting at element 4*block
template <class F>
static void blocks(const Key& k, int64_t n, const F& f) {
  const int64_t nb = (n + 3) / 4;
  parallel_for(nb, 4096, [&](int64_t lo, int64_t hi) {
    uint32_t u[4];
    for (int64_t b = lo; b < hi; ++b) {
      const uint64_t c = k.ctr + static_cast<uint64_t>(b);
      philox(static_cast<uint32_t>(c), static_cast<uint32_t>(c >> 32), 0u, 0u, k.k0, k.k1, u);
      f(b * 4, u);
    }
  });
}

static Status k_random_uniform(const TensorView*, int, const TensorView& out, const double* attrs) {
  KILN_REQUIRE(out.dtype == DT_FLOAT32, ST_DTYPE, "randomUniform writes float32");
  const Key k = read_key(attrs);
  const double lo = attrs[ATTR_RANDOM_UNIFORM_LOW], hi = attrs[ATTR_RANDOM_UNIFORM_HIGH];
  float* o = out.ptr<float>();
  const int64_t n = out.numel();
  blocks(k, n, [&](int64_t i0, const uint32_t* u) {
    for (int l = 0; l < 4 && i0 + l < n; ++l) {
      const double x = static_cast<double>(u[l] >> 8) * (1.0 / 16777216.0);
      o[i0 + l] = static_cast<float>(lo + (hi - lo) * x);
    }
  });
  return Status::ok();
}

static Status k_random_normal(const TensorView*, int, const TensorView& out, const double* attrs) {
  KILN_REQUIRE(out.dtype == DT_FLOAT32, ST_DTYPE, "randomNormal writes float32");
  const Key k = read_key(attrs);
  const double mean = attrs[ATTR_RANDOM_NORMAL_MEAN], sd = attrs[ATTR_RANDOM_NORMAL_STD];
  float* o = out.ptr<float>();
  const int64_t n = out.numel();
  blocks(k, n, [&](int64_t i0, const uint32_t* u) {
    double z[4];
    for (int p = 0; p < 2; ++p) {  // Box-Muller on lanes (0,1) and (2,3)
      const double u1 = (static_cast<double>(u[2 * p]) + 1.0) * (1.0 / 4294967296.0);  // (0, 1]
      const double u2 = static_cast<double>(u[2 * p + 1]) * (1.0 / 4294967296.0);
      const double r = std::sqrt(-2.0 * std::log(u1));
      const double th = 6.283185307179586 * u2;
      z[2 * p] = r * std::cos(th);
      z[2 * p + 1] = r * std::sin(th);
    }
    for (int l = 0; l < 4 && i0 + l < n; ++l) o[i0 + l] = static_cast<float>(mean + sd * z[l]);
  });
  return Status::ok();
}

static Status k_random_int(const TensorView*, int, const TensorView& out, const double* attrs) {
  KILN_REQUIRE(out.dtype == DT_INT32, ST_DTYPE, "randomInt writes int32");
  const Key k = read_key(attrs);
  const double lo = attrs[ATTR_RANDOM_INT_LOW], hi = attrs[ATTR_RANDOM_INT_HIGH];
  KILN_REQUIRE(hi > lo && hi - lo <= 4294967296.0 && lo >= -2147483648.0 && hi <= 2147483648.0, ST_ARG,
               "randomInt needs low < high within int32, got [", lo, ", ", hi, ")");
  const uint64_t range = static_cast<uint64_t>(hi - lo);
  const int64_t base = static_cast<int64_t>(lo);
  int32_t* o = out.ptr<int32_t>();
  const int64_t n = out.numel();
  blocks(k, n, [&](int64_t i0, const uint32_t* u) {
    for (int l = 0; l < 4 && i0 + l < n; ++l)
      o[i0 + l] = static_cast<int32_t>(base + static_cast<int64_t>((static_cast<uint64_t>(u[l]) * range) >> 32));
  });
  return Status::ok();
}

}  // namespace rng

void register_random(KernelTable& t) {
  t.fn[OP_RANDOM_UNIFORM] = rng::k_random_uniform;
  t.fn[OP_RANDOM_NORMAL] = rng::k_random_normal;
  t.fn[OP_RANDOM_INT] = rng::k_random_int;
}

#endif
