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

// Philox4x32-10 on 8 counters at once, each 32-bit word in a 64-bit lane (so the 32x32 -> 64-bit products are
// plain lane multiplies): c0, c1 the counters' low and high words (words 2 and 3 are 0), out[w] word w
typedef uint64_t vu8 __attribute__((vector_size(64)));
static inline void philox8(vu8 c0, vu8 c1, uint32_t k0, uint32_t k1, vu8 out[4]) {
  vu8 c2 = {}, c3 = {};
  for (int r = 0; r < 10; ++r) {
    const vu8 p0 = (c0 & 0xffffffffu) * 0xD2511F53u;
    const vu8 p1 = (c2 & 0xffffffffu) * 0xCD9E8D57u;
    const vu8 n0 = (p1 >> 32) ^ c1 ^ k0;
    const vu8 n2 = (p0 >> 32) ^ c3 ^ k1;
    c1 = p1 & 0xffffffffu;
    c3 = p0 & 0xffffffffu;
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

constexpr int kGroup = 8;  // blocks of four values per group: the lanes of vu8

// For each group g of kGroup blocks (elements [32 g, 32 g + 32)): v = f(u), where u[w] lane l is word w of block
// 8 g + l and v[w] lane l becomes element 4 (8 g + l) + w, stored as T where it is below n.
template <class T, class V, class F>
static void groups(const Key& k, int64_t n, T* o, const F& f) {
  const int64_t count = ((n + 3) / 4 + kGroup - 1) / kGroup;
  parallel_for(count, 512, [&](int64_t lo, int64_t hi) {
    for (int64_t g = lo; g < hi; ++g) {
      vu8 c;
      for (int l = 0; l < kGroup; ++l) c[l] = k.ctr + static_cast<uint64_t>(g * kGroup + l);
      vu8 u[4];
      philox8(c & 0xffffffffu, c >> 32, k.k0, k.k1, u);
      V v[4];
      f(u, v);
      const int64_t i0 = g * kGroup * 4;
      if (i0 + kGroup * 4 <= n) {
        for (int l = 0; l < kGroup; ++l)
          for (int w = 0; w < 4; ++w) o[i0 + 4 * l + w] = static_cast<T>(v[w][l]);
      } else {
        for (int l = 0; l < kGroup; ++l)
          for (int w = 0; w < 4; ++w)
            if (i0 + 4 * l + w < n) o[i0 + 4 * l + w] = static_cast<T>(v[w][l]);
      }
    }
  });
}

typedef double vd8 __attribute__((vector_size(64)));
typedef int64_t vi8 __attribute__((vector_size(64)));

static Status k_random_uniform(const TensorView*, int, const TensorView& out, const double* attrs) {
  KILN_REQUIRE(out.dtype == DT_FLOAT32, ST_DTYPE, "randomUniform writes float32");
  const Key k = read_key(attrs);
  const double lo = attrs[ATTR_RANDOM_UNIFORM_LOW], hi = attrs[ATTR_RANDOM_UNIFORM_HIGH];
  groups<float, vd8>(k, out.numel(), out.ptr<float>(), [&](const vu8* u, vd8* v) {
    for (int w = 0; w < 4; ++w) v[w] = lo + (hi - lo) * (__builtin_convertvector(u[w] >> 8, vd8) * (1.0 / 16777216.0));
  });
  return Status::ok();
}

// ---- randomNormal: Box-Muller in double on vectors of 8 lanes (one AVX-512 register, two AVX2 or four SSE ones)
// instead of libm's scalar log, sin and cos (16 ns a value, 5x PyTorch's randn). The polynomials are accurate to
// ~1e-16, so the float results are the reference's (src/backends/js/random.ts) but for a value within that
// distance of a float rounding boundary: none in 2^20 values of one seed, and test/random.test.ts compares every
// value of draws up to 40001 long.

// ln x for normal positive x: x = m 2^e with m in [sqrt(1/2), sqrt(2)), ln m = 2 atanh(f), f = (m - 1) / (m + 1),
// |f| <= 0.1716, so the series' eleven terms leave under 1e-16
static inline vd8 vlog_pd(vd8 x) {
  const vi8 bits = __builtin_bit_cast(vi8, x);
  vi8 e = ((bits >> 52) & 0x7ff) - 1023;
  vd8 m = __builtin_bit_cast(vd8, (bits & 0x000fffffffffffffLL) | 0x3ff0000000000000LL);
  const vi8 big = m > 1.4142135623730951;  // -1 where m is past sqrt(2)
  m = big ? m * 0.5 : m;
  e -= big;
  const vd8 f = (m - 1.0) / (m + 1.0), s = f * f;
  vd8 p = vd8{} + 1.0 / 21;
  for (int k = 9; k >= 0; --k) p = p * s + 1.0 / (2 * k + 1);
  return __builtin_convertvector(e, vd8) * 0.6931471805599453094 + 2.0 * f * p;
}
// cos and sin of 2 pi u / 2^32 for 32-bit u: the nearest quarter turn q exactly in integers, the rest
// x = d 2 pi / 2^32 in [-pi/4, pi/4], where Taylor series to x^17 / x^16 leave under 1e-17
static inline void vsincos_turn(vi8 u, vd8& c, vd8& s) {
  const vi8 q = ((u + (1LL << 29)) >> 30) & 3, d = u - (((u + (1LL << 29)) >> 30) << 30);
  const vd8 x = __builtin_convertvector(d, vd8) * (6.283185307179586477 / 4294967296.0), x2 = x * x;
  // 1 / (2k+1)! and 1 / (2k)!, k = 0 .. 8; the series alternate, so Horner subtracts
  constexpr double kSin[9] = {1.0,
                              1.0 / 6,
                              1.0 / 120,
                              1.0 / 5040,
                              1.0 / 362880,
                              1.0 / 39916800,
                              1.0 / 6227020800,
                              1.0 / 1307674368000,
                              1.0 / 355687428096000};
  constexpr double kCos[9] = {1.0,           1.0 / 2,         1.0 / 24,          1.0 / 720,           1.0 / 40320,
                              1.0 / 3628800, 1.0 / 479001600, 1.0 / 87178291200, 1.0 / 20922789888000};
  vd8 ps = vd8{} + kSin[8], pc = vd8{} + kCos[8];
  for (int k = 7; k >= 0; --k) {
    ps = kSin[k] - x2 * ps;
    pc = kCos[k] - x2 * pc;
  }
  const vd8 sx = x * ps, cx = pc;
  // theta = q pi/2 + x: (cos, sin) = (c, s), (-s, c), (-c, -s), (s, -c)
  c = q == 0 ? cx : q == 1 ? -sx : q == 2 ? -cx : sx;
  s = q == 0 ? sx : q == 1 ? cx : q == 2 ? -sx : -cx;
}

static Status k_random_normal(const TensorView*, int, const TensorView& out, const double* attrs) {
  KILN_REQUIRE(out.dtype == DT_FLOAT32, ST_DTYPE, "randomNormal writes float32");
  const Key k = read_key(attrs);
  const double mean = attrs[ATTR_RANDOM_NORMAL_MEAN], sd = attrs[ATTR_RANDOM_NORMAL_STD];
  groups<float, vd8>(k, out.numel(), out.ptr<float>(), [&](const vu8* u, vd8* v) {
    for (int p = 0; p < 2; ++p) {  // words (0, 1) and (2, 3): u1 in (0, 1], the angle from u2
      const vd8 u1 = (__builtin_convertvector(u[2 * p], vd8) + 1.0) * (1.0 / 4294967296.0);
      vd8 r = -2.0 * vlog_pd(u1);
      for (int l = 0; l < kGroup; ++l) r[l] = std::sqrt(r[l]);
      vd8 c, s;
      vsincos_turn(__builtin_convertvector(u[2 * p + 1], vi8), c, s);
      v[2 * p] = mean + sd * (r * c);
      v[2 * p + 1] = mean + sd * (r * s);
    }
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
  groups<int32_t, vi8>(k, out.numel(), out.ptr<int32_t>(), [&](const vu8* u, vi8* v) {
    for (int w = 0; w < 4; ++w) v[w] = base + __builtin_convertvector((u[w] * range) >> 32, vi8);
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
