// Included INSIDE each ISA pass (no include guard on purpose) by files that include <immintrin.h> in their
// head on x86 (native/cpu/conv.cc, native/cpu/quant.cc): 2x2 max pooling at stride 2 over many windows at once,
// forward and backward (maxPool2d, and the int8 convolution's fused pool).

// L 2x2 windows at stride 2 at once, from input rows r0, r1 (from the first window's column): the maximum of
// each by max_pool_takes' rule (the first maximum, or the first NaN) and which tap holds it (0..3 for (0,0),
// (0,1), (1,0), (1,1)), as L-lane vectors. Branch-free and across windows: per window, the compare-and-select
// chain over the taps was latency-bound at ~60 cycles, as much as the rest of the step's pooling.
template <int L>
struct LaneVec;  // float and int32 vectors of L lanes (a dependent vector_size is not allowed)
template <>
struct LaneVec<16> {
  typedef float F __attribute__((vector_size(64)));
  typedef int32_t I __attribute__((vector_size(64)));
};
template <>
struct LaneVec<8> {
  typedef float F __attribute__((vector_size(32)));
  typedef int32_t I __attribute__((vector_size(32)));
};
template <>
struct LaneVec<4> {
  typedef float F __attribute__((vector_size(16)));
  typedef int32_t I __attribute__((vector_size(16)));
};

template <int L>
struct Pool2x2 {
  typedef typename LaneVec<L>::F F;
  typedef typename LaneVec<L>::I I;
  static I seq(int mul, int add) {
    I r;
    for (int l = 0; l < L; ++l) r[l] = l * mul + add;
    return r;
  }
  static F load(const float* p) {
    F v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
  }
  static void store(float* p, F v) { __builtin_memcpy(p, &v, sizeof v); }
  static void max(const float* r0, const float* r1, F& m, I& idx) {
    max(load(r0), load(r0 + L), load(r1), load(r1 + L), m, idx);
  }
  // the same from the windows' 2L values of each row, loaded
  static void max(F a0, F a1, F b0, F b1, F& m, I& idx) {
    const I ev = seq(2, 0), od = seq(2, 1);
    const F t[4] = {__builtin_shuffle(a0, a1, ev), __builtin_shuffle(a0, a1, od), __builtin_shuffle(b0, b1, ev),
                    __builtin_shuffle(b0, b1, od)};
    m = t[0];
    idx = I{} + 0;
    for (int k = 1; k < 4; ++k) {
      const I take = (m == m) & ((t[k] > m) | (t[k] != t[k]));
      m = take ? t[k] : m;
      idx = take ? I{} + k : idx;
    }
  }
  // forward: L maxima into o
  static void forward(const float* r0, const float* r1, float* o) {
    F m;
    I idx;
    max(r0, r1, m, idx);
    store(o, m);
  }
  // backward: the gradients g of L windows onto their maxima, zeros on the other taps of rows d0, d1
  static void backward(const float* r0, const float* r1, const float* g, float* d0, float* d1) {
    F d[4];
    backward(load(r0), load(r0 + L), load(r1), load(r1 + L), load(g), d);
    store(d0, d[0]);
    store(d0 + L, d[1]);
    store(d1, d[2]);
    store(d1 + L, d[3]);
  }
  // the same from loaded values: d = the gradient rows' 2L values of row 0, then of row 1
  static void backward(F a0, F a1, F b0, F b1, F gv, F d[4]) {
    F m;
    I idx;
    max(a0, a1, b0, b1, m, idx);
    const F z = F{};
    const F t0 = idx == 0 ? gv : z, t1 = idx == 1 ? gv : z, t2 = idx == 2 ? gv : z, t3 = idx == 3 ? gv : z;
    const I lo = seq(1, 0) / 2 + (seq(1, 0) % 2) * L, hi = lo + L / 2;
    d[0] = __builtin_shuffle(t0, t1, lo);
    d[1] = __builtin_shuffle(t0, t1, hi);
    d[2] = __builtin_shuffle(t2, t3, lo);
    d[3] = __builtin_shuffle(t2, t3, hi);
  }
};

#if KILN_VEC_BYTES == 64
// The last k < 16 windows of a row as one 16-window block with masked loads and stores (no read past the row):
// rows of CNN feature maps are 7-28 windows, and the 8/4 blocks and scalar rest cost as much as the full blocks.
struct PoolTail {
  typedef Pool2x2<16>::F F;
  static F ld(const float* p, int64_t n) {  // p[0, n), n <= 16, zeros past n
    return reinterpret_cast<F>(_mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1u), p));
  }
  static void st(float* p, F v, int64_t n) {
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1u), reinterpret_cast<__m512>(v));
  }
  static void forward(const float* x0, const float* x1, float* o, int64_t k) {
    const int64_t n0 = std::min<int64_t>(2 * k, 16), n1 = 2 * k - n0;
    F m;
    Pool2x2<16>::I idx;
    Pool2x2<16>::max(ld(x0, n0), ld(x0 + 16, n1), ld(x1, n0), ld(x1 + 16, n1), m, idx);
    st(o, m, k);
  }
  static void backward(const float* x0, const float* x1, const float* g, float* o0, float* o1, int64_t k) {
    const int64_t n0 = std::min<int64_t>(2 * k, 16), n1 = 2 * k - n0;
    F d[4];
    Pool2x2<16>::backward(ld(x0, n0), ld(x0 + 16, n1), ld(x1, n0), ld(x1 + 16, n1), ld(g, k), d);
    st(o0, d[0], n0);
    st(o0 + 16, d[1], n1);
    st(o1, d[2], n0);
    st(o1 + 16, d[3], n1);
  }
};
#endif

// Runs f<L>(ow) over the windows [0, OW) of one row in blocks of 16 (then 8 and 4 below AVX-512); returns where
// the rest starts.
template <class F>
static int64_t pool_row_blocks(int64_t OW, F&& f) {
  int64_t ow = 0;
  for (; ow + 16 <= OW; ow += 16) f(std::integral_constant<int, 16>{}, ow);
#if KILN_VEC_BYTES != 64  // AVX-512 takes the rest as one masked block (PoolTail)
  if (ow + 8 <= OW) {
    f(std::integral_constant<int, 8>{}, ow);
    ow += 8;
  }
  if (ow + 4 <= OW) {
    f(std::integral_constant<int, 4>{}, ow);
    ow += 4;
  }
#endif
  return ow;
}

// One row of 2x2 windows at stride 2: o[0, n) = the maxima of the windows over input rows r0, r1 (2n values
// each), by max_pool_takes' rule: vector blocks, a masked block for the rest on AVX-512, else scalar.
static inline void pool2x2_row(const float* r0, const float* r1, float* o, int64_t n) {
  int64_t rest = pool_row_blocks(n, [&](auto L, int64_t ow) { Pool2x2<L>::forward(r0 + 2 * ow, r1 + 2 * ow, o + ow); });
#if KILN_VEC_BYTES == 64
  if (rest < n) {
    PoolTail::forward(r0 + 2 * rest, r1 + 2 * rest, o + rest, n - rest);
    rest = n;
  }
#endif
  for (; rest < n; ++rest) {
    const float t[4] = {r0[2 * rest], r0[2 * rest + 1], r1[2 * rest], r1[2 * rest + 1]};
    float m = t[0];
    for (int k = 1; k < 4; ++k)
      if (max_pool_takes(t[k], m, false)) m = t[k];
    o[rest] = m;
  }
}
