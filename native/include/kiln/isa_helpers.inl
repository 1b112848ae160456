// Included INSIDE each ISA pass (no include guard on purpose): everything here is compiled once per target.
// Vector-friendly float math: branch-free, so GCC vectorises the loops that call it.

typedef float vfloat __attribute__((vector_size(KILN_VEC_BYTES)));
static constexpr int kVL = KILN_VEC_BYTES / 4;

static inline vfloat vload(const float* p) {
  vfloat v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
static inline void vstore(float* p, vfloat v) { __builtin_memcpy(p, &v, sizeof v); }

typedef int32_t vint __attribute__((vector_size(KILN_VEC_BYTES)));

// In-register transpose of a kVL x kVL block: v[r] lane l -> v[l] lane r. Stage h swaps, in each pair of rows
// (i, i + h) with bit h of i clear, the lanes of row i that have bit h set with the lanes of row i + h that have
// it clear (the off-diagonal h x h blocks); log2(kVL) stages of kVL two-source shuffles (vpermt2ps on AVX-512).
template <int H, size_t... L>
static inline void vswap_blocks(vfloat& a, vfloat& b, std::index_sequence<L...>) {
  const vfloat na = __builtin_shufflevector(a, b, static_cast<int>((L & H) ? kVL + (L ^ H) : L)...);
  const vfloat nb = __builtin_shufflevector(a, b, static_cast<int>((L & H) ? kVL + L : (L ^ H))...);
  a = na;
  b = nb;
}
template <int H>
static inline void vtranspose_stage(vfloat* v) {
  if constexpr (H > 0) {
#pragma GCC unroll 16
    for (int i = 0; i < kVL; ++i)
      if (!(i & H)) vswap_blocks<H>(v[i], v[i + H], std::make_index_sequence<kVL>{});
    vtranspose_stage<H / 2>(v);
  }
}
static inline void vtranspose(vfloat* v) { vtranspose_stage<kVL / 2>(v); }

// Interleaves two vectors: lo = a0 b0 a1 b1 ... (the first halves), hi = the same of the second halves.
template <size_t... L>
static inline void vzip_idx(vfloat a, vfloat b, vfloat& lo, vfloat& hi, std::index_sequence<L...>) {
  lo = __builtin_shufflevector(a, b, static_cast<int>((L & 1) ? kVL + L / 2 : L / 2)...);
  hi = __builtin_shufflevector(a, b, static_cast<int>((L & 1) ? kVL + kVL / 2 + L / 2 : kVL / 2 + L / 2)...);
}
static inline void vzip(vfloat a, vfloat b, vfloat& lo, vfloat& hi) {
  vzip_idx(a, b, lo, hi, std::make_index_sequence<kVL>{});
}

// The sum of a vector's lanes as a tree of log2(kVL) shuffle-adds (a loop over the lanes is a chain of kVL
// dependent scalar adds: the compiler may not reorder float sums).
template <int H, size_t... L>
static inline vfloat vfold(vfloat v, std::index_sequence<L...>) {
  return v + __builtin_shufflevector(v, v, static_cast<int>((L + H) % kVL)...);
}
template <int H>
static inline vfloat vfold_all(vfloat v) {
  if constexpr (H > 0)
    return vfold_all<H / 2>(vfold<H>(v, std::make_index_sequence<kVL>{}));
  else
    return v;
}
static inline float vhsum(vfloat v) { return vfold_all<kVL / 2>(v)[0]; }

// The lane sums of kVL vectors at once: v[0 .. kVL) -> one vector whose lane i is the sum of v[i]'s lanes, as
// log2(kVL) levels that each add pairs of vectors half-folded into one (kVL - 1 two-source shuffle pairs in all,
// against kVL separate trees of log2(kVL) shuffles). At level S each vector holds kVL / S sums-in-progress of S
// lanes; a pair (a, b) becomes one vector of a's then b's, S / 2 lanes each. Overwrites v.
static constexpr int vsum_idx(int S, int j, bool hi) {
  const int h = S / 2, n = kVL / S, s = j / h, w = j % h;
  return (s < n ? s * S : kVL + (s - n) * S) + (hi ? h : 0) + w;
}
template <int S, size_t... J>
static inline vfloat vsum_pair(vfloat a, vfloat b, std::index_sequence<J...>) {
  return __builtin_shufflevector(a, b, vsum_idx(S, static_cast<int>(J), false)...) +
         __builtin_shufflevector(a, b, vsum_idx(S, static_cast<int>(J), true)...);
}
template <int S>
static inline vfloat vsum_lanes(vfloat* v, int n = kVL) {
  if constexpr (S > 1) {
    for (int i = 0; i < n / 2; ++i) v[i] = vsum_pair<S>(v[2 * i], v[2 * i + 1], std::make_index_sequence<kVL>{});
    return vsum_lanes<S / 2>(v, n / 2);
  } else {
    (void)n;
    return v[0];
  }
}

static inline vfloat vsplat(float f) { return vfloat{} + f; }
static inline vint vsplati(int32_t i) { return vint{} + i; }
static inline vfloat vsel(vint m, vfloat a, vfloat b) { return m ? a : b; }
static inline vfloat vbits(vint i) { return __builtin_bit_cast(vfloat, i); }
static inline vint vfbits(vfloat f) { return __builtin_bit_cast(vint, f); }

// exp(x), ~1 ulp on the normal range; overflow -> inf, underflow -> subnormal/0, NaN -> NaN.
static inline vfloat vexp(vfloat x) {
  vfloat xc = vsel(x > vsplat(89.0f), vsplat(89.0f), x);  // e^89 overflows to inf in the product below
  xc = vsel(xc < vsplat(-103.972084f), vsplat(-103.972084f), xc);
  const vfloat t = xc * 1.44269504088896341f;
  const vint n = __builtin_convertvector(t + vsel(t >= vsplat(0.f), vsplat(0.5f), vsplat(-0.5f)), vint);
  const vfloat fn = __builtin_convertvector(n, vfloat);
  vfloat r = xc - fn * 0.693359375f;
  r = r - fn * -2.12194440e-4f;
  vfloat p = vsplat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const vint n1 = n >> 1, n2 = n - n1;  // two factors so 2^n spans the subnormal and overflow range
  const vfloat y = p * vbits((n1 + 127) << 23) * vbits((n2 + 127) << 23);
  return vsel(x != x, x, y);
}

// log(x), ~1 ulp; log(0) = -inf, log(<0) = NaN, log(inf) = inf, subnormals handled.
static inline vfloat vlog(vfloat x) {
  const vint sub = x < vsplat(1.17549435e-38f);
  const vfloat xs = vsel(sub, x * 8388608.0f, x);  // 2^23
  const vint bits = vfbits(xs);
  vint e = ((bits >> 23) & 0xff) - 126;
  e = sub ? e - 23 : e;
  vfloat m = vbits((bits & 0x007fffff) | 0x3f000000);  // [0.5, 1)
  const vint small = m < vsplat(0.707106781186547524f);
  e = small ? e - 1 : e;
  m = vsel(small, m + m - 1.0f, m - 1.0f);
  const vfloat z = m * m;
  vfloat y = vsplat(7.0376836292e-2f);
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z;
  const vfloat fe = __builtin_convertvector(e, vfloat);
  y += fe * -2.12194440e-4f;
  y += -0.5f * z;
  vfloat r = m + y + fe * 0.693359375f;
  r = vsel(x == vsplat(0.f), vsplat(-__builtin_inff()), r);
  r = vsel(x < vsplat(0.f), vsplat(__builtin_nanf("")), r);
  r = vsel(x == vsplat(__builtin_inff()), x, r);
  return vsel(x != x, x, r);
}

static inline vfloat vtanh(vfloat x) {
  const vint neg = x < vsplat(0.f);
  const vfloat ax = vsel(neg, -x, x);
  const vfloat z = x * x;
  vfloat p = vsplat(-5.70498872745e-3f);
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const vfloat small = p * z * x + x;
  const vfloat e = vexp(-2.0f * ax);
  vfloat big = (1.0f - e) / (1.0f + e);
  big = vsel(neg, -big, big);
  const vfloat r = vsel(ax < vsplat(0.625f), small, big);
  return vsel(x != x, x, r);
}

static inline vfloat vsigmoid(vfloat x) { return 1.0f / (1.0f + vexp(-x)); }

// erfc with < 1.2e-7 relative error everywhere (Chebyshev fit in the form of Numerical Recipes' erfcc).
static inline vfloat verfc(vfloat x) {
  const vfloat z = vsel(x < vsplat(0.f), -x, x);
  const vfloat t = 1.0f / (1.0f + 0.5f * z);
  vfloat p = vsplat(0.17087277f);
  p = p * t - 0.82215223f;
  p = p * t + 1.48851587f;
  p = p * t - 1.13520398f;
  p = p * t + 0.27886807f;
  p = p * t - 0.18628806f;
  p = p * t + 0.09678418f;
  p = p * t + 0.37409196f;
  p = p * t + 1.00002368f;
  p = p * t - 1.26551223f;
  const vfloat ans = t * vexp(-z * z + p);
  return vsel(x >= vsplat(0.f), ans, 2.0f - ans);
}

static inline vfloat vgelu(vfloat x) { return 0.5f * x * verfc(-x * 0.70710678118654752f); }
static inline vfloat vgelu_grad(vfloat x) {
  return 0.5f * verfc(-x * 0.70710678118654752f) + x * 0.39894228040143268f * vexp(-0.5f * x * x);
}

static inline float fexp(float x) { return vexp(vsplat(x))[0]; }

// o[i] = f(a[i * sa]) for i < n, with f taking and returning vfloat.
template <class F>
static inline void vmap1(float* o, const float* a, int64_t sa, int64_t n, const F& f) {
  int64_t i = 0;
  if (sa == 1) {
    for (; i + kVL <= n; i += kVL) vstore(o + i, f(vload(a + i)));
  } else {
    for (; i + kVL <= n; i += kVL) {
      vfloat v;
      for (int l = 0; l < kVL; ++l) v[l] = a[(i + l) * sa];
      vstore(o + i, f(v));
    }
  }
  if (i < n) {
    vfloat v = vsplat(0.f);
    for (int64_t l = 0; l < n - i; ++l) v[l] = a[(i + l) * sa];
    const vfloat r = f(v);
    for (int64_t l = 0; l < n - i; ++l) o[i + l] = r[l];
  }
}

template <class F>
static inline void vmap2(float* o, const float* a, int64_t sa, const float* b, int64_t sb, int64_t n, const F& f) {
  int64_t i = 0;
  if (sa == 1 && sb == 1) {
    for (; i + kVL <= n; i += kVL) vstore(o + i, f(vload(a + i), vload(b + i)));
  }
  for (; i < n; i += kVL) {
    const int64_t m = n - i < kVL ? n - i : kVL;
    vfloat va = vsplat(0.f), vb = vsplat(0.f);
    for (int64_t l = 0; l < m; ++l) {
      va[l] = a[(i + l) * sa];
      vb[l] = b[(i + l) * sb];
    }
    const vfloat r = f(va, vb);
    for (int64_t l = 0; l < m; ++l) o[i + l] = r[l];
  }
}

// ---- strided iteration over up to 4 operands of one shape (operand 0 is the contiguous output) ----
struct StridedIter {
  int ndim = 0;
  int64_t shape[kMaxDims];
  int64_t st[4][kMaxDims];
  int nops = 0;
};

// Merges dims that are contiguous for every operand and drops size-1 dims; keeps at least one dim.
static inline StridedIter make_iter(const TensorView* const* ops, int nops) {
  StridedIter it;
  it.nops = nops;
  const TensorView& o = *ops[0];
  int nd = 0;
  for (int d = 0; d < o.ndim; ++d) {
    if (o.shape[d] == 1) continue;
    it.shape[nd] = o.shape[d];
    for (int k = 0; k < nops; ++k) it.st[k][nd] = ops[k]->strides[d];
    ++nd;
  }
  if (nd == 0) {
    it.shape[0] = 1;
    for (int k = 0; k < nops; ++k) it.st[k][0] = 1;
    nd = 1;
  }
  int w = 0;
  for (int d = 1; d < nd; ++d) {
    bool merge = true;
    for (int k = 0; k < nops; ++k)
      if (it.st[k][w] != it.st[k][d] * it.shape[d]) {
        merge = false;
        break;
      }
    if (merge) {
      it.shape[w] *= it.shape[d];
      for (int k = 0; k < nops; ++k) it.st[k][w] = it.st[k][d];
    } else {
      ++w;
      it.shape[w] = it.shape[d];
      for (int k = 0; k < nops; ++k) it.st[k][w] = it.st[k][d];
    }
  }
  it.ndim = w + 1;
  return it;
}

// Calls body(offsets[4] in elements, n, inner strides[4]) for every innermost row, in parallel over rows
// (or over chunks of the single row when everything collapsed to one dim).
template <class Body>
static inline void for_each_row(const StridedIter& it, int64_t grain, const Body& body) {
  const int nd = it.ndim;
  for (int d = 0; d < nd; ++d)
    if (it.shape[d] == 0) return;  // empty: nothing to visit (and no division by a zero extent below)
  const int64_t inner = it.shape[nd - 1];
  int64_t inner_st[4] = {0, 0, 0, 0};
  for (int k = 0; k < it.nops; ++k) inner_st[k] = it.st[k][nd - 1];
  int64_t rows = 1;
  for (int d = 0; d < nd - 1; ++d) rows *= it.shape[d];
  if (rows == 1) {
    parallel_for(inner, grain, [&](int64_t lo, int64_t hi) {
      int64_t off[4] = {0, 0, 0, 0};
      for (int k = 0; k < it.nops; ++k) off[k] = lo * inner_st[k];
      body(off, hi - lo, inner_st);
    });
    return;
  }
  const int64_t row_grain = inner >= grain ? 1 : (grain + inner - 1) / inner;
  parallel_for(rows, row_grain, [&](int64_t lo, int64_t hi) {
    int64_t idx[kMaxDims] = {};
    int64_t off[4] = {0, 0, 0, 0};
    int64_t r = lo;
    for (int d = nd - 2; d >= 0; --d) {
      idx[d] = r % it.shape[d];
      r /= it.shape[d];
      for (int k = 0; k < it.nops; ++k) off[k] += idx[d] * it.st[k][d];
    }
    for (int64_t row = lo; row < hi; ++row) {
      body(off, inner, inner_st);
      for (int d = nd - 2; d >= 0; --d) {
        ++idx[d];
        for (int k = 0; k < it.nops; ++k) off[k] += it.st[k][d];
        if (idx[d] < it.shape[d]) break;
        for (int k = 0; k < it.nops; ++k) off[k] -= idx[d] * it.st[k][d];
        idx[d] = 0;
      }
    }
  });
}

static constexpr int64_t kGrain = 16384;
