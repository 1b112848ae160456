// Reductions over a contiguous axis range of a contiguous input, seen as [outer, r, inner];
// arg-reductions and (log)softmax over one axis.
#ifndef KILN_ISA
#include <algorithm>
#include <vector>

#include "kiln/cpu_common.h"
#include "kiln/layer_norm.h"
#define KILN_ISA_FILE "cpu/reduce.cc"
#include "kiln/isa_passes.h"
#else
#include "kiln/isa_helpers.inl"

namespace rd {

struct Dims3 {
  int64_t outer = 1, r = 1, inner = 1;
};

static Status split(const TensorView& in, int64_t a0, int64_t a1, Dims3& d) {
  KILN_REQUIRE(a0 >= 0 && a0 <= a1 && a1 <= in.ndim, ST_ARG, "reduction axes [", a0, ", ", a1, ") out of range for a ",
               in.ndim, "-d tensor");
  for (int i = 0; i < a0; ++i) d.outer *= in.shape[i];
  for (int i = static_cast<int>(a0); i < a1; ++i) d.r *= in.shape[i];
  for (int i = static_cast<int>(a1); i < in.ndim; ++i) d.inner *= in.shape[i];
  return Status::ok();
}

static Status check_reduce(const TensorView* in, const TensorView& out, const double* attrs, Dims3& d, const char* op) {
  KILN_REQUIRE(in[0].contiguous(), ST_ARG, op, " needs a contiguous input");
  KILN_REQUIRE(in[0].dtype == DT_FLOAT32 || in[0].dtype == DT_INT32, ST_DTYPE, op, " takes float32 or int32, got ",
               kDTypeNames[in[0].dtype]);
  KILN_REQUIRE(out.dtype == in[0].dtype, ST_DTYPE, op, " keeps the dtype");
  const int64_t a0 = static_cast<int64_t>(attrs[ATTR_AXES_AXIS_START]),
                a1 = static_cast<int64_t>(attrs[ATTR_AXES_AXIS_END]);
  if (Status s = split(in[0], a0, a1, d); !s.good()) return s;
  // expected output shape = input shape without [a0, a1)
  bool ok = out.ndim == in[0].ndim - (a1 - a0);
  for (int i = 0, j = 0; ok && i < in[0].ndim; ++i) {
    if (i >= a0 && i < a1) continue;
    ok = out.shape[j++] == in[0].shape[i];
  }
  KILN_REQUIRE(ok, ST_SHAPE, op, " over axes [", a0, ", ", a1, ") of ", shape_str(in[0]),
               " gives a different shape than ", shape_str(out));
  return Status::ok();
}

typedef double vdouble __attribute__((vector_size(KILN_VEC_BYTES * 2)));  // kVL doubles

// Sum of a contiguous run: four float vector accumulators, which pass their sums into double lanes every 16 steps,
// so no float lane adds more than 16 values: lanes that each summed 256 of a 16384-value block put the sum of 2^22
// copies of 0.1f 2.4e-6 off (PyTorch 3e-7), now 1.5e-7. A run of up to 1024 values sums as before.
static inline double sum_run(const float* p, int64_t n) {
  constexpr int64_t kStep = 4 * kVL, kRun = 16 * kStep;
  vdouble d = {};
  int64_t i = 0;
  while (i + kStep <= n) {
    vfloat a0 = {}, a1 = {}, a2 = {}, a3 = {};
    for (const int64_t stop = std::min(n, i + kRun); i + kStep <= stop; i += kStep) {
      a0 += vload(p + i);
      a1 += vload(p + i + kVL);
      a2 += vload(p + i + 2 * kVL);
      a3 += vload(p + i + 3 * kVL);
    }
    d += __builtin_convertvector((a0 + a1) + (a2 + a3), vdouble);
  }
  double s = 0;
  for (int l = 0; l < kVL; ++l) s += d[l];
  for (; i < n; ++i) s += p[i];
  return s;
}

// A row longer than this sums in blocks of it whose double partials are added in order: the same bits whether
// the blocks run on one thread or several, so a whole-tensor sum (a loss over a conv output) can use every
// thread; its parts also stay in the cache of the core that wrote them, which a one-thread sum of 1.6 MB
// written by two threads paid for (2x slower than on one thread).
constexpr int64_t kSumBlock = 16384;
// column sums (inner > 1) of at most kColOutputs outputs down kColBlock rows or more take blocks of this many rows
constexpr int64_t kColBlock = 1024, kColOutputs = 65536;

static Status k_sum(const TensorView* in, int, const TensorView& out, const double* attrs) {
  Dims3 d;
  if (Status s = check_reduce(in, out, attrs, d, "sum"); !s.good()) return s;
  const int64_t outer = d.outer, r = d.r, inner = d.inner;
  if (in[0].dtype == DT_FLOAT32) {
    const float* x = in[0].ptr<float>();
    float* o = out.ptr<float>();
    if (inner == 1 && r > kSumBlock) {
      const int64_t nb = (r + kSumBlock - 1) / kSumBlock;
      std::vector<double> part(static_cast<size_t>(outer * nb));
      parallel_for(outer * nb, 1, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) {
          const int64_t b0 = (i % nb) * kSumBlock;
          part[static_cast<size_t>(i)] = sum_run(x + (i / nb) * r + b0, std::min(kSumBlock, r - b0));
        }
      });
      for (int64_t i = 0; i < outer; ++i) {
        double s = 0;
        for (int64_t b = 0; b < nb; ++b) s += part[static_cast<size_t>(i * nb + b)];
        o[i] = static_cast<float>(s);
      }
    } else if (inner == 1) {
      parallel_for(outer, std::max<int64_t>(1, kGrain / std::max<int64_t>(r, 1)), [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) o[i] = static_cast<float>(sum_run(x + i * r, r));
      });
    } else if (r >= 2 * kColBlock && outer * inner <= kColOutputs) {
      // Few outputs down a long axis (a bias gradient's column sums over a big batch): blocks of kColBlock rows sum
      // all their columns, contiguously, into double partials, which are then added in block order (the same bits
      // on any thread count). Threads that split the columns instead each walked every row: [65536, 64] took
      // 2.3x longer on two threads than on one.
      const int64_t nb = (r + kColBlock - 1) / kColBlock;
      std::vector<double> part(static_cast<size_t>(outer * nb * inner));
      parallel_for(outer * nb, 1, [&](int64_t lo, int64_t hi) {
        for (int64_t t = lo; t < hi; ++t) {
          const int64_t oi = t / nb, b0 = (t % nb) * kColBlock, b1 = std::min(r, b0 + kColBlock);
          double* pa = part.data() + t * inner;
          const float* base = x + oi * r * inner;
          int64_t k = b0;
          for (; k + 4 <= b1; k += 4) {  // 4 rows pairwise in float, then into the double partials
            const float *r0 = base + k * inner, *r1 = r0 + inner, *r2 = r1 + inner, *r3 = r2 + inner;
            for (int64_t j = 0; j < inner; ++j) pa[j] += (r0[j] + r1[j]) + (r2[j] + r3[j]);
          }
          for (; k < b1; ++k) {
            const float* row = base + k * inner;
            for (int64_t j = 0; j < inner; ++j) pa[j] += row[j];
          }
        }
      });
      parallel_for(outer * inner, std::max<int64_t>(1, kGrain / nb), [&](int64_t lo, int64_t hi) {
        for (int64_t c = lo; c < hi; ++c) {
          const int64_t oi = c / inner, j = c % inner;
          double s = 0;
          for (int64_t b = 0; b < nb; ++b) s += part[static_cast<size_t>((oi * nb + b) * inner + j)];
          o[c] = static_cast<float>(s);
        }
      });
    } else {
      parallel_for(outer * inner, std::max<int64_t>(kVL, kGrain / std::max<int64_t>(r, 1)),
                   [&](int64_t lo, int64_t hi) {
                     // each task owns a range of output cells; accumulate rows of the reduced axis in double
                     std::vector<double> acc;
                     for (int64_t c = lo; c < hi;) {
                       const int64_t oi = c / inner, j0 = c % inner;
                       const int64_t j1 = std::min(inner, j0 + (hi - c));
                       acc.assign(static_cast<size_t>(j1 - j0), 0.0);
                       double* pa = acc.data();
                       const float* base = x + oi * r * inner;
                       for (int64_t k = 0; k < r; ++k) {
                         const float* row = base + k * inner;
                         for (int64_t j = j0; j < j1; ++j) pa[j - j0] += row[j];
                       }
                       for (int64_t j = j0; j < j1; ++j) o[oi * inner + j] = static_cast<float>(pa[j - j0]);
                       c += j1 - j0;
                     }
                   });
    }
  } else {
    const uint32_t* x = reinterpret_cast<const uint32_t*>(in[0].ptr<int32_t>());
    int32_t* o = out.ptr<int32_t>();
    for (int64_t oi = 0; oi < outer; ++oi)
      for (int64_t j = 0; j < inner; ++j) {
        uint32_t s = 0;
        for (int64_t k = 0; k < r; ++k) s += x[(oi * r + k) * inner + j];
        o[oi * inner + j] = static_cast<int32_t>(s);
      }
  }
  return Status::ok();
}

template <bool IsMax>
static Status extreme(const TensorView* in, int, const TensorView& out, const double* attrs) {
  Dims3 d;
  if (Status s = check_reduce(in, out, attrs, d, IsMax ? "max" : "min"); !s.good()) return s;
  KILN_REQUIRE(d.r > 0 || d.outer * d.inner == 0, ST_SHAPE, IsMax ? "max" : "min",
               " over an empty axis has no identity; the reduced axes of ", shape_str(in[0]), " have size 0");
  const int64_t outer = d.outer, r = d.r, inner = d.inner;
  auto run = [&](auto* x, auto* o) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(x)>>;
    parallel_for(outer, 1, [&](int64_t lo, int64_t hi) {
      std::vector<uint8_t> nan(std::is_same_v<T, float> ? static_cast<size_t>(inner) : 0);
      for (int64_t oi = lo; oi < hi; ++oi) {
        T* po = o + oi * inner;
        const T* px = x + oi * r * inner;
        for (int64_t j = 0; j < inner; ++j) po[j] = px[j];
        std::fill(nan.begin(), nan.end(), uint8_t{0});
        for (int64_t k = 1; k < r; ++k) {
          const T* row = px + k * inner;
          for (int64_t j = 0; j < inner; ++j) {
            const T v = row[j];
            po[j] = IsMax ? (v > po[j] ? v : po[j]) : (v < po[j] ? v : po[j]);
          }
        }
        if constexpr (std::is_same_v<T, float>) {  // NaN anywhere in the slice -> NaN
          for (int64_t k = 0; k < r; ++k)
            for (int64_t j = 0; j < inner; ++j) nan[j] |= (px[k * inner + j] != px[k * inner + j]);
          for (int64_t j = 0; j < inner; ++j)
            if (nan[j]) po[j] = __builtin_nanf("");
        }
      }
    });
  };
  if (in[0].dtype == DT_FLOAT32)
    run(in[0].ptr<float>(), out.ptr<float>());
  else
    run(in[0].ptr<int32_t>(), out.ptr<int32_t>());
  return Status::ok();
}

static_assert(ATTR_ARGMIN_AXIS == ATTR_ARGMAX_AXIS);  // arg_reduce serves both

template <bool IsMax>
static Status arg_reduce(const TensorView* in, int, const TensorView& out, const double* attrs) {
  const char* op = IsMax ? "argmax" : "argmin";
  KILN_REQUIRE(in[0].contiguous(), ST_ARG, op, " needs a contiguous input");
  KILN_REQUIRE(in[0].dtype == DT_FLOAT32 || in[0].dtype == DT_INT32, ST_DTYPE, op, " takes float32 or int32, got ",
               kDTypeNames[in[0].dtype]);
  KILN_REQUIRE(out.dtype == DT_INT32, ST_DTYPE, op, " writes int32");
  const int64_t axis = static_cast<int64_t>(attrs[ATTR_ARGMAX_AXIS]);
  Dims3 d;
  if (Status s = split(in[0], axis, axis + 1, d); !s.good()) return s;
  KILN_REQUIRE(axis < in[0].ndim, ST_ARG, op, " axis ", axis, " out of range");
  KILN_REQUIRE(out.numel() == d.outer * d.inner, ST_SHAPE, op, " output has the wrong size");
  KILN_REQUIRE(d.r > 0 || d.outer * d.inner == 0, ST_SHAPE, op, " over an empty axis of ", shape_str(in[0]));
  int32_t* o = out.ptr<int32_t>();
  auto run = [&](auto* x) {
    for (int64_t oi = 0; oi < d.outer; ++oi)
      for (int64_t j = 0; j < d.inner; ++j) {
        int64_t best = 0;
        auto bv = x[oi * d.r * d.inner + j];
        for (int64_t k = 1; k < d.r; ++k) {
          const auto v = x[(oi * d.r + k) * d.inner + j];
          if (bv != bv) break;  // first NaN wins
          if (v != v || (IsMax ? v > bv : v < bv)) {
            bv = v;
            best = k;
          }
        }
        o[oi * d.inner + j] = static_cast<int32_t>(best);
      }
  };
  if (in[0].dtype == DT_FLOAT32)
    run(in[0].ptr<float>());
  else
    run(in[0].ptr<int32_t>());
  return Status::ok();
}

// One row's max m (NaN ignored; 0 when nothing is above -inf) and s = sum exp(x - m), writing exp(x - m) to e
// unless e is null, in one pass over the row after the max (the exps were stored, then read again to sum). Its
// log-softmax is (x - m) - log s: the log-sum-exp m + log s would round log s away when |m| is large (1e8 + log 2
// is 1e8 in float32). Float lanes pass their sums into double lanes every 16 vectors, as sum_run's.
struct RowExp {
  float m;
  double s;
};
static inline RowExp row_exp(const float* px, float* e, int64_t n) {
  vfloat vmx = vsplat(-__builtin_inff());
  int64_t i = 0;
  for (; i + kVL <= n; i += kVL) {
    const vfloat v = vload(px + i);
    vmx = vsel(v > vmx, v, vmx);
  }
  float m = -__builtin_inff();
  for (int l = 0; l < kVL; ++l) m = vmx[l] > m ? vmx[l] : m;
  for (; i < n; ++i) m = px[i] > m ? px[i] : m;
  if (m == -__builtin_inff()) m = 0.f;  // all -inf: exp(-inf - 0) = 0, so softmax is 0/0 = NaN, as in PyTorch
  const vfloat vm = vsplat(m);
  vdouble d = {};
  i = 0;
  while (i + kVL <= n) {
    vfloat a = {};
    for (const int64_t stop = std::min(n, i + 16 * kVL); i + kVL <= stop; i += kVL) {
      const vfloat x = vexp(vload(px + i) - vm);
      if (e) vstore(e + i, x);
      a += x;
    }
    d += __builtin_convertvector(a, vdouble);
  }
  double s = 0;
  for (int l = 0; l < kVL; ++l) s += d[l];
  if (i < n) {  // the tail through one padded vector, as vmap1
    vfloat v = vsplat(0.f);
    for (int64_t l = 0; l < n - i; ++l) v[l] = px[i + l];
    const vfloat x = vexp(v - vm);
    for (int64_t l = 0; l < n - i; ++l) {
      if (e) e[i + l] = x[l];
      s += x[l];
    }
  }
  return {m, s};
}

static_assert(ATTR_LOG_SOFTMAX_AXIS == ATTR_SOFTMAX_AXIS);  // softmax_rows serves both

template <bool Log>
static Status softmax_rows(const TensorView* in, int, const TensorView& out, const double* attrs) {
  const char* op = Log ? "logSoftmax" : "softmax";
  KILN_REQUIRE(in[0].contiguous(), ST_ARG, op, " needs a contiguous input");
  KILN_REQUIRE(in[0].dtype == DT_FLOAT32 && out.dtype == DT_FLOAT32, ST_DTYPE, op, " takes float32, got ",
               kDTypeNames[in[0].dtype]);
  KILN_REQUIRE(same_shape(in[0], out), ST_SHAPE, op, " keeps the shape");
  const int64_t axis = static_cast<int64_t>(attrs[ATTR_SOFTMAX_AXIS]);
  KILN_REQUIRE(axis >= 0 && axis < in[0].ndim, ST_ARG, op, " axis ", axis, " out of range for ", shape_str(in[0]));
  Dims3 d;
  if (Status s = split(in[0], axis, axis + 1, d); !s.good()) return s;
  const float* x = in[0].ptr<float>();
  float* o = out.ptr<float>();
  const int64_t n = d.r, inner = d.inner;
  if (inner == 1) {
    parallel_for(d.outer, std::max<int64_t>(1, kGrain / std::max<int64_t>(n, 1) / 8), [&](int64_t lo, int64_t hi) {
      for (int64_t row = lo; row < hi; ++row) {
        const float* px = x + row * n;
        float* po = o + row * n;
        const RowExp re = row_exp(px, Log ? nullptr : po, n);
        const float m = re.m;
        if (Log) {  // (x - m) - log s: x - (m + log s) rounds log s away when |m| is large
          const float ls = static_cast<float>(std::log(re.s));
          vmap1(po, px, 1, n, [m, ls](vfloat v) { return (v - m) - ls; });
        } else {
          const float inv = static_cast<float>(1.0 / re.s);
          vmap1(po, po, 1, n, [inv](vfloat v) { return v * inv; });
        }
      }
    });
  } else {
    parallel_for(d.outer * inner, 64, [&](int64_t lo, int64_t hi) {
      for (int64_t c = lo; c < hi; ++c) {
        const int64_t oi = c / inner, j = c % inner;
        const float* px = x + oi * n * inner + j;
        float* po = o + oi * n * inner + j;
        float m = -__builtin_inff();
        for (int64_t i = 0; i < n; ++i) m = px[i * inner] > m ? px[i * inner] : m;
        if (m == -__builtin_inff()) m = 0.f;
        double s = 0;
        for (int64_t i = 0; i < n; ++i) {
          const float e = fexp(px[i * inner] - m);
          po[i * inner] = e;
          s += e;
        }
        if (Log) {
          const float ls = static_cast<float>(std::log(s));
          for (int64_t i = 0; i < n; ++i) po[i * inner] = (px[i * inner] - m) - ls;
        } else {
          const float inv = static_cast<float>(1.0 / s);
          for (int64_t i = 0; i < n; ++i) po[i * inner] *= inv;
        }
      }
    });
  }
  // NaN in a row propagates through max (comparisons ignore it) only via exp(NaN - m) = NaN -> sum NaN: correct.
  return Status::ok();
}

// Fused softmax cross-entropy over rows of logits [N, C] with int32 labels [N] and optional class weights [C].
// Row loss = -(1-s) w[y] lp[y] - (s/C) sum_c w[c] lp[c], lp = log-softmax (max-shifted, so any logit size is safe).
// Backward (given the upstream gradient per row g): g * ((1-s) w[y] (p - onehot) + (s/C) (p sum(w) - w)).
struct CeArgs {
  const float* x = nullptr;
  const int32_t* y = nullptr;
  const float* w = nullptr;
  int64_t n = 0, c = 0;
  float smooth = 0;
};

static Status ce_check(const TensorView* in, int nin, int want, const char* op, CeArgs& a) {
  KILN_REQUIRE(nin == want || nin == want + 1, ST_ARG, op, " takes ", want, " inputs and an optional weight, got ",
               nin);
  const TensorView &x = in[0], &y = in[1];
  KILN_REQUIRE(x.ndim == 2 && x.dtype == DT_FLOAT32 && x.contiguous(), ST_SHAPE, op,
               ": logits must be contiguous float32 [N, C], got ", shape_str(x));
  KILN_REQUIRE(y.ndim == 1 && y.dtype == DT_INT32 && y.contiguous() && y.shape[0] == x.shape[0], ST_SHAPE, op,
               ": labels must be int32 [", x.shape[0], "], got ", shape_str(y));
  a.x = x.ptr<float>();
  a.y = y.ptr<int32_t>();
  a.n = x.shape[0];
  a.c = x.shape[1];
  if (nin == want + 1) {
    const TensorView& w = in[want];
    KILN_REQUIRE(w.ndim == 1 && w.dtype == DT_FLOAT32 && w.contiguous() && w.shape[0] == a.c, ST_SHAPE, op,
                 ": weight must be float32 [", a.c, "], got ", shape_str(w));
    a.w = w.ptr<float>();
  }
  for (int64_t i = 0; i < a.n; ++i)
    KILN_REQUIRE(a.y[i] >= 0 && a.y[i] < a.c, ST_ARG, "crossEntropy label ", a.y[i], " at index ", i,
                 " is out of range; expected a class in [0, ", a.c, ") (set ignoreIndex to leave padding rows out)");
  KILN_REQUIRE(a.c > 0 || a.n == 0, ST_SHAPE, op, ": logits need at least one class");
  return Status::ok();
}

// ---- fused layer normalisation over the rows of x [R, C]: two-pass statistics in double per row, then
// y = (x - mean) * rstd (* weight + bias). The backward recomputes the statistics, writes dx per row
// (rstd * (dxh - mean(dxh) - xh * mean(dxh * xh)), dxh = dy * weight) and dweight/dbias per column range.
static void ln_stats(const float* x, int64_t C, float eps, float& mu, float& rstd) {
  double s = 0;
  for (int64_t c = 0; c < C; ++c) s += x[c];
  const double m = s / static_cast<double>(C);
  double v = 0;
  for (int64_t c = 0; c < C; ++c) v += (x[c] - m) * (x[c] - m);
  mu = static_cast<float>(m);
  rstd = static_cast<float>(1.0 / std::sqrt(v / static_cast<double>(C) + eps));
}

static Status k_layer_norm(const TensorView* in, int nin, const TensorView& out, const double* attrs) {
  LnArgs a;
  if (Status st = ln_check(in, nin, true, attrs, a); !st.good()) return st;
  KILN_REQUIRE(out.dtype == DT_FLOAT32 && out.numel() == a.R * a.C, ST_SHAPE, "layerNorm writes [", a.R, ", ", a.C,
               "]");
  float* o = out.ptr<float>();
  parallel_for(a.R, std::max<int64_t>(1, kGrain / std::max<int64_t>(a.C, 1) / 4), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const float* x = a.x + r * a.C;
      float* y = o + r * a.C;
      float mu, rstd;
      ln_stats(x, a.C, a.eps, mu, rstd);
      if (a.a)
        for (int64_t c = 0; c < a.C; ++c) y[c] = (x[c] - mu) * rstd * a.a[c] + a.b[c];
      else
        for (int64_t c = 0; c < a.C; ++c) y[c] = (x[c] - mu) * rstd;
    }
  });
  return Status::ok();
}

static Status k_layer_norm_backward(const TensorView* in, int nin, const TensorView& out, const double* attrs) {
  LnArgs a;
  if (Status st = ln_check(in, nin, false, attrs, a); !st.good()) return st;
  const int64_t R = a.R, C = a.C;
  KILN_REQUIRE(out.dtype == DT_FLOAT32 && out.numel() == R * C + 2 * C, ST_SHAPE, "layerNormBackward writes ",
               R * C + 2 * C, " values (dx, dweight, dbias)");
  float* o = out.ptr<float>();
  const float* g = a.a;
  const float* w = a.b;  // the weight (optional)
  std::vector<float> mus(static_cast<size_t>(R)), rstds(static_cast<size_t>(R));
  parallel_for(R, std::max<int64_t>(1, kGrain / std::max<int64_t>(C, 1) / 4), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const float* x = a.x + r * C;
      const float* gy = g + r * C;
      float* dx = o + r * C;
      float mu, rstd;
      ln_stats(x, C, a.eps, mu, rstd);
      mus[r] = mu;
      rstds[r] = rstd;
      double m1 = 0, m2 = 0;
      for (int64_t c = 0; c < C; ++c) {
        const float dxh = w ? gy[c] * w[c] : gy[c];
        m1 += dxh;
        m2 += static_cast<double>(dxh) * ((x[c] - mu) * rstd);
      }
      const float f1 = static_cast<float>(m1 / static_cast<double>(C)),
                  f2 = static_cast<float>(m2 / static_cast<double>(C));
      for (int64_t c = 0; c < C; ++c) {
        const float dxh = w ? gy[c] * w[c] : gy[c];
        dx[c] = rstd * (dxh - f1 - (x[c] - mu) * rstd * f2);
      }
    }
  });
  float* dw = o + R * C;
  float* db = dw + C;
  // column sums, each thread a range of columns read row by row
  parallel_for(C, std::max<int64_t>(16, kGrain / std::max<int64_t>(R, 1)), [&](int64_t lo, int64_t hi) {
    std::vector<double> sw(static_cast<size_t>(hi - lo), 0.0), sb(static_cast<size_t>(hi - lo), 0.0);
    for (int64_t r = 0; r < R; ++r) {
      const float* x = a.x + r * C;
      const float* gy = g + r * C;
      for (int64_t c = lo; c < hi; ++c) {
        sw[c - lo] += static_cast<double>(gy[c]) * ((x[c] - mus[r]) * rstds[r]);
        sb[c - lo] += gy[c];
      }
    }
    for (int64_t c = lo; c < hi; ++c) {
      dw[c] = static_cast<float>(sw[c - lo]);
      db[c] = static_cast<float>(sb[c - lo]);
    }
  });
  return Status::ok();
}

static Status k_softmax_cross_entropy(const TensorView* in, int nin, const TensorView& out, const double* attrs) {
  CeArgs a;
  if (Status s = ce_check(in, nin, 2, "softmaxCrossEntropy", a); !s.good()) return s;
  KILN_REQUIRE(out.dtype == DT_FLOAT32 && out.numel() == a.n, ST_SHAPE, "softmaxCrossEntropy writes [", a.n, "]");
  a.smooth = static_cast<float>(attrs[ATTR_SOFTMAX_CROSS_ENTROPY_LABEL_SMOOTHING]);
  float* o = out.ptr<float>();
  parallel_for(a.n, std::max<int64_t>(1, kGrain / std::max<int64_t>(a.c, 1) / 4), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const float* px = a.x + r * a.c;
      const RowExp re = row_exp(px, nullptr, a.c);
      const float m = re.m, ls = static_cast<float>(std::log(re.s));
      const int32_t y = a.y[r];
      const float wy = a.w ? a.w[y] : 1.f;
      float loss = -(1.f - a.smooth) * wy * ((px[y] - m) - ls);
      if (a.smooth != 0.f) {
        double acc = 0;
        for (int64_t k = 0; k < a.c; ++k) acc += static_cast<double>(a.w ? a.w[k] : 1.f) * ((px[k] - m) - ls);
        loss -= a.smooth / static_cast<float>(a.c) * static_cast<float>(acc);
      }
      o[r] = loss;
    }
  });
  return Status::ok();
}

static Status k_softmax_cross_entropy_backward(const TensorView* in, int nin, const TensorView& out,
                                               const double* attrs) {
  CeArgs a;
  if (Status s = ce_check(in, nin, 3, "softmaxCrossEntropyBackward", a); !s.good()) return s;
  const TensorView& g = in[2];
  KILN_REQUIRE(g.dtype == DT_FLOAT32 && g.contiguous() && g.numel() == a.n, ST_SHAPE,
               "softmaxCrossEntropyBackward: the row gradient must be float32 [", a.n, "], got ", shape_str(g));
  KILN_REQUIRE(out.dtype == DT_FLOAT32 && out.numel() == a.n * a.c, ST_SHAPE, "softmaxCrossEntropyBackward writes [",
               a.n, ", ", a.c, "]");
  a.smooth = static_cast<float>(attrs[ATTR_SOFTMAX_CROSS_ENTROPY_BACKWARD_LABEL_SMOOTHING]);
  const float* pg = g.ptr<float>();
  float* o = out.ptr<float>();
  double wsum = static_cast<double>(a.c);
  if (a.w) {
    wsum = 0;
    for (int64_t k = 0; k < a.c; ++k) wsum += a.w[k];
  }
  const float W = static_cast<float>(wsum), sc = a.smooth / static_cast<float>(a.c);
  parallel_for(a.n, std::max<int64_t>(1, kGrain / std::max<int64_t>(a.c, 1) / 4), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const float* px = a.x + r * a.c;
      float* po = o + r * a.c;
      const float inv = static_cast<float>(1.0 / row_exp(px, po, a.c).s);  // po: exp(x - m), then the gradient
      const int32_t y = a.y[r];
      const float gr = pg[r];
      const float hard = (1.f - a.smooth) * (a.w ? a.w[y] : 1.f);
      for (int64_t k = 0; k < a.c; ++k) {
        const float p = po[k] * inv;  // the probability
        const float wk = a.w ? a.w[k] : 1.f;
        po[k] = gr * (hard * p + sc * (p * W - wk));
      }
      po[y] -= gr * hard;
    }
  });
  return Status::ok();
}

// Quantile q of each column of x [N, F], ignoring NaN, with linear interpolation between order statistics
// (position q * (n - 1), as NumPy's default). A column with no finite-or-inf values gives NaN.
static Status k_nan_quantile(const TensorView* in, int, const TensorView& out, const double* attrs) {
  const TensorView& x = in[0];
  KILN_REQUIRE(x.ndim == 2 && x.dtype == DT_FLOAT32 && x.contiguous(), ST_SHAPE,
               "nanQuantile takes contiguous float32 [N, F], got ", shape_str(x));
  const int64_t n = x.shape[0], f = x.shape[1];
  KILN_REQUIRE(out.dtype == DT_FLOAT32 && out.numel() == f, ST_SHAPE, "nanQuantile writes [", f, "]");
  const double q = attrs[ATTR_NAN_QUANTILE_Q];
  KILN_REQUIRE(q >= 0 && q <= 1, ST_ARG, "nanQuantile: q must be in [0, 1], got ", q);
  const float* px = x.ptr<float>();
  float* o = out.ptr<float>();
  // one row-major pass splits the table into its columns (reading a column with stride F would touch a cache
  // line per value, once per column), then each column is selected in parallel
  std::vector<std::vector<float>> cols(static_cast<size_t>(f));
  for (auto& c : cols) c.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < f; ++j) {
      const float v = px[i * f + j];
      if (v == v) cols[static_cast<size_t>(j)].push_back(v);
    }
  parallel_for(f, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t j = lo; j < hi; ++j) {
      std::vector<float>& col = cols[static_cast<size_t>(j)];
      if (col.empty()) {
        o[j] = __builtin_nanf("");
        continue;
      }
      const double pos = q * static_cast<double>(col.size() - 1);
      const size_t k = static_cast<size_t>(pos);
      std::nth_element(col.begin(), col.begin() + k, col.end());
      const float a = col[k];
      float b = a;
      if (k + 1 < col.size()) b = *std::min_element(col.begin() + k + 1, col.end());
      const double frac = pos - static_cast<double>(k);
      o[j] = frac == 0 ? a : static_cast<float>(a + (static_cast<double>(b) - a) * frac);
    }
  });
  return Status::ok();
}

// Count, mean, population variance, min and max of each column of x [N, F], ignoring NaN, in one pass:
// row chunks accumulate Welford moments in double, then merge with Chan et al.'s pairwise formula.
static Status k_nan_column_stats(const TensorView* in, int, const TensorView& out, const double*) {
  const TensorView& x = in[0];
  KILN_REQUIRE(x.ndim == 2 && x.dtype == DT_FLOAT32 && x.contiguous(), ST_SHAPE,
               "nanColumnStats takes contiguous float32 [N, F], got ", shape_str(x));
  const int64_t n = x.shape[0], f = x.shape[1];
  KILN_REQUIRE(out.dtype == DT_FLOAT32 && out.numel() == 5 * f, ST_SHAPE, "nanColumnStats writes [5, ", f, "]");
  struct Acc {
    double cnt = 0, mean = 0, m2 = 0;
    float lo = __builtin_inff(), hi = -__builtin_inff();
  };
  const int64_t rows_per = std::max<int64_t>(1024, (n + 63) / 64);
  const int64_t chunks = n == 0 ? 0 : (n + rows_per - 1) / rows_per;
  std::vector<Acc> part(static_cast<size_t>(chunks * f));
  const float* px = x.ptr<float>();
  parallel_for(chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      Acc* a = part.data() + c * f;
      for (int64_t i = c * rows_per, e = std::min(n, (c + 1) * rows_per); i < e; ++i) {
        const float* row = px + i * f;
        for (int64_t j = 0; j < f; ++j) {
          const float v = row[j];
          if (v != v) continue;
          Acc& s = a[j];
          s.cnt += 1;
          const double d = v - s.mean;
          s.mean += d / s.cnt;
          s.m2 += d * (v - s.mean);
          s.lo = v < s.lo ? v : s.lo;
          s.hi = v > s.hi ? v : s.hi;
        }
      }
    }
  });
  float* o = out.ptr<float>();
  for (int64_t j = 0; j < f; ++j) {
    Acc t;
    for (int64_t c = 0; c < chunks; ++c) {
      const Acc& b = part[static_cast<size_t>(c * f + j)];
      if (b.cnt == 0) continue;
      const double tot = t.cnt + b.cnt, d = b.mean - t.mean;
      t.mean += d * b.cnt / tot;
      t.m2 += b.m2 + d * d * t.cnt * b.cnt / tot;
      t.cnt = tot;
      t.lo = std::min(t.lo, b.lo);
      t.hi = std::max(t.hi, b.hi);
    }
    const float nan = __builtin_nanf("");
    o[j] = static_cast<float>(t.cnt);
    o[f + j] = t.cnt > 0 ? static_cast<float>(t.mean) : nan;
    o[2 * f + j] = t.cnt > 0 ? static_cast<float>(t.m2 / t.cnt) : nan;
    o[3 * f + j] = t.cnt > 0 ? t.lo : nan;
    o[4 * f + j] = t.cnt > 0 ? t.hi : nan;
  }
  return Status::ok();
}

// Row fingerprints for leakage checks: per row of x [N, F], two multiplicative hashes of the float32 bit
// patterns (NaNs canonicalised). src/backends/js/reduce.ts computes the same numbers.
static Status k_row_hash(const TensorView* in, int, const TensorView& out, const double*) {
  const TensorView& x = in[0];
  KILN_REQUIRE(x.ndim == 2 && x.dtype == DT_FLOAT32 && x.contiguous(), ST_SHAPE,
               "rowHash takes contiguous float32 [N, F], got ", shape_str(x));
  const int64_t n = x.shape[0], f = x.shape[1];
  KILN_REQUIRE(out.dtype == DT_INT32 && out.numel() == 2 * n, ST_SHAPE, "rowHash writes int32 [", n, ", 2]");
  const uint32_t* w = reinterpret_cast<const uint32_t*>(x.ptr<float>());
  int32_t* o = out.ptr<int32_t>();
  parallel_for(n, 256, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      uint32_t h1 = 0x811c9dc5u ^ static_cast<uint32_t>(f), h2 = 0x9e3779b9u;
      for (int64_t k = i * f, e = k + f; k < e; ++k) {
        const uint32_t raw = w[k];
        const uint32_t v = (raw & 0x7f800000u) == 0x7f800000u && (raw & 0x7fffffu) != 0 ? 0x7fc00000u : raw;
        h1 = (h1 ^ v) * 0x01000193u;
        h2 = (h2 ^ v) * 0x5bd1e995u;
        h2 ^= h2 >> 13;
      }
      o[2 * i] = static_cast<int32_t>(h1);
      o[2 * i + 1] = static_cast<int32_t>(h2);
    }
  });
  return Status::ok();
}

// the kernels of ops served by one template, under their ops' names
constexpr KernelFn k_max = extreme<true>, k_min = extreme<false>;
constexpr KernelFn k_argmax = arg_reduce<true>, k_argmin = arg_reduce<false>;
constexpr KernelFn k_softmax = softmax_rows<false>, k_log_softmax = softmax_rows<true>;

}  // namespace rd

void register_reduce(KernelTable& t) {
  t.fn[OP_ROW_HASH] = rd::k_row_hash;
  t.fn[OP_NAN_COLUMN_STATS] = rd::k_nan_column_stats;
  t.fn[OP_NAN_QUANTILE] = rd::k_nan_quantile;
  t.fn[OP_SOFTMAX_CROSS_ENTROPY] = rd::k_softmax_cross_entropy;
  t.fn[OP_SOFTMAX_CROSS_ENTROPY_BACKWARD] = rd::k_softmax_cross_entropy_backward;
  t.fn[OP_SUM] = rd::k_sum;
  t.fn[OP_MAX] = rd::k_max;
  t.fn[OP_MIN] = rd::k_min;
  t.fn[OP_ARGMAX] = rd::k_argmax;
  t.fn[OP_ARGMIN] = rd::k_argmin;
  t.fn[OP_SOFTMAX] = rd::k_softmax;
  t.fn[OP_LAYER_NORM] = rd::k_layer_norm;
  t.fn[OP_LAYER_NORM_BACKWARD] = rd::k_layer_norm_backward;
  t.fn[OP_LOG_SOFTMAX] = rd::k_log_softmax;
}

#endif
