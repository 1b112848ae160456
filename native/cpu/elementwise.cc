// Elementwise kernels: fill/arange, unary, binary with broadcasting (stride-0 views), compare, where, cast.
#ifndef KILN_ISA
#include "kiln/cpu_common.h"
#define KILN_ISA_FILE "cpu/elementwise.cc"
#include "kiln/isa_passes.h"
#else
#include "kiln/isa_helpers.inl"

namespace ew {

// ---- element conversion (matches src/tensor/dtype.ts castValue) ----
static inline double load_d(const char* p, int dt) {
  switch (dt) {
    case DT_FLOAT32: {
      float v;
      __builtin_memcpy(&v, p, 4);
      return v;
    }
    case DT_FLOAT16: {
      uint16_t v;
      __builtin_memcpy(&v, p, 2);
      return half_to_float(v);
    }
    case DT_BFLOAT16: {
      uint16_t v;
      __builtin_memcpy(&v, p, 2);
      return bf16_to_float(v);
    }
    case DT_INT32: {
      int32_t v;
      __builtin_memcpy(&v, p, 4);
      return v;
    }
    case DT_INT8: return static_cast<int8_t>(*p);
    case DT_UINT8: return static_cast<uint8_t>(*p);
    default: return *p ? 1.0 : 0.0;
  }
}
static inline void store_d(char* p, int dt, double v) {
  switch (dt) {
    case DT_FLOAT32: {
      float f = static_cast<float>(v);
      __builtin_memcpy(p, &f, 4);
      break;
    }
    case DT_FLOAT16: {
      uint16_t h = float_to_half(static_cast<float>(v));
      __builtin_memcpy(p, &h, 2);
      break;
    }
    case DT_BFLOAT16: {
      uint16_t h = float_to_bf16(static_cast<float>(v));
      __builtin_memcpy(p, &h, 2);
      break;
    }
    case DT_INT32: {
      int32_t i = sat_cast<int32_t>(v, -2147483648.0, 2147483647.0);
      __builtin_memcpy(p, &i, 4);
      break;
    }
    case DT_INT8: *reinterpret_cast<int8_t*>(p) = sat_cast<int8_t>(v, -128.0, 127.0); break;
    case DT_UINT8: *reinterpret_cast<uint8_t*>(p) = sat_cast<uint8_t>(v, 0.0, 255.0); break;
    default: *reinterpret_cast<uint8_t*>(p) = (v != 0.0) ? 1 : 0; break;  // NaN != 0 -> true
  }
}

template <class TO, class TI, class F>
static void unary_apply(const TensorView& in, const TensorView& out, const F& f) {
  const TensorView* ops[2] = {&out, &in};
  const StridedIter it = make_iter(ops, 2);
  TO* o = out.ptr<TO>();
  const TI* a = in.ptr<TI>();
  for_each_row(it, kGrain, [&](const int64_t* off, int64_t n, const int64_t* st) {
    TO* po = o + off[0];
    const TI* pa = a + off[1];
    if (st[1] == 1) {
      for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i]);
    } else {
      const int64_t s = st[1];
      for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i * s]);
    }
  });
}

template <class TO, class TI, class F>
static void binary_apply(const TensorView& a, const TensorView& b, const TensorView& out, const F& f) {
  const TensorView* ops[3] = {&out, &a, &b};
  const StridedIter it = make_iter(ops, 3);
  TO* o = out.ptr<TO>();
  const TI* pa0 = a.ptr<TI>();
  const TI* pb0 = b.ptr<TI>();
  for_each_row(it, kGrain, [&](const int64_t* off, int64_t n, const int64_t* st) {
    TO* po = o + off[0];
    const TI* pa = pa0 + off[1];
    const TI* pb = pb0 + off[2];
    const int64_t sa = st[1], sb = st[2];
    if (sa == 1 && sb == 1) {
      for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], pb[i]);
    } else if (sa == 1 && sb == 0) {
      const TI bv = *pb;
      for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], bv);
    } else if (sa == 0 && sb == 1) {
      const TI av = *pa;
      for (int64_t i = 0; i < n; ++i) po[i] = f(av, pb[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i * sa], pb[i * sb]);
    }
  });
}

// float -> float elementwise map through a vector function
template <class F>
static void vunary(const TensorView& in, const TensorView& out, const F& f) {
  const TensorView* ops[2] = {&out, &in};
  const StridedIter it = make_iter(ops, 2);
  float* o = out.ptr<float>();
  const float* a = in.ptr<float>();
  for_each_row(it, kGrain,
               [&](const int64_t* off, int64_t n, const int64_t* st) { vmap1(o + off[0], a + off[1], st[1], n, f); });
}

static inline vfloat vsqrt(vfloat x) {
  vfloat r;
  for (int l = 0; l < kVL; ++l) r[l] = __builtin_sqrtf(x[l]);
  return r;
}

static Status check_same(const TensorView* in, int nin, const TensorView& out) {
  for (int i = 0; i < nin; ++i)
    KILN_REQUIRE(same_shape(in[i], out), ST_SHAPE, "input ", i, " has shape ", shape_str(in[i]),
                 " but the output has shape ", shape_str(out), " (inputs must be broadcast first)");
  return Status::ok();
}

static Status need_dtype(const TensorView& t, bool allow_int, const char* op) {
  if (t.dtype == DT_FLOAT32) return Status::ok();
  if (allow_int && t.dtype == DT_INT32) return Status::ok();
  return fail(ST_DTYPE,
              cat("op '", op, "' takes ", allow_int ? "float32 or int32" : "float32", ", got ", kDTypeNames[t.dtype]));
}

// ---------------- creation ----------------
static Status k_fill(const TensorView*, int, const TensorView& out, const double* attrs) {
  const int sz = kDTypeSize[out.dtype];
  char one[8];
  store_d(one, out.dtype, attrs[ATTR_FILL_VALUE]);
  char* o = out.bytes();
  const int64_t n = out.numel();
  if (out.dtype == DT_FLOAT32 || out.dtype == DT_INT32) {
    uint32_t v;
    __builtin_memcpy(&v, one, 4);
    uint32_t* p = reinterpret_cast<uint32_t*>(o);
    parallel_for(n, kGrain * 4, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) p[i] = v;
    });
  } else if (sz == 2) {
    uint16_t v;
    __builtin_memcpy(&v, one, 2);
    uint16_t* p = reinterpret_cast<uint16_t*>(o);
    for (int64_t i = 0; i < n; ++i) p[i] = v;
  } else {
    __builtin_memset(o, one[0], static_cast<size_t>(n));
  }
  return Status::ok();
}

static Status k_arange(const TensorView*, int, const TensorView& out, const double* attrs) {
  KILN_REQUIRE(out.ndim == 1, ST_SHAPE, "arange output must be 1-D, got ", shape_str(out));
  KILN_REQUIRE(out.dtype == DT_FLOAT32 || out.dtype == DT_INT32, ST_DTYPE, "arange produces float32 or int32, got ",
               kDTypeNames[out.dtype]);
  const double start = attrs[ATTR_ARANGE_START], step = attrs[ATTR_ARANGE_STEP];
  const int64_t n = out.numel();
  if (out.dtype == DT_FLOAT32) {
    float* p = out.ptr<float>();
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<float>(start + static_cast<double>(i) * step);
  } else {
    int32_t* p = out.ptr<int32_t>();
    for (int64_t i = 0; i < n; ++i)
      p[i] = sat_cast<int32_t>(start + static_cast<double>(i) * step, -2147483648.0, 2147483647.0);
  }
  return Status::ok();
}

// ---------------- unary ----------------
#define KILN_UNARY_FLOAT(NAME, EXPR)                                                            \
  static Status k_##NAME(const TensorView* in, int nin, const TensorView& out, const double*) { \
    if (Status s = check_same(in, nin, out); !s.good()) return s;                               \
    if (Status s = need_dtype(in[0], false, #NAME); !s.good()) return s;                        \
    KILN_REQUIRE(out.dtype == DT_FLOAT32, ST_DTYPE, #NAME " writes float32");                   \
    vunary(in[0], out, [](vfloat x) { return (EXPR); });                                        \
    return Status::ok();                                                                        \
  }

KILN_UNARY_FLOAT(exp, vexp(x))
KILN_UNARY_FLOAT(log, vlog(x))
KILN_UNARY_FLOAT(sqrt, vsqrt(x))
KILN_UNARY_FLOAT(tanh, vtanh(x))
KILN_UNARY_FLOAT(sigmoid, vsigmoid(x))
KILN_UNARY_FLOAT(gelu, vgelu(x))
KILN_UNARY_FLOAT(silu, x* vsigmoid(x))

#define KILN_UNARY_NUM(NAME, FEXPR, IEXPR)                                                      \
  static Status k_##NAME(const TensorView* in, int nin, const TensorView& out, const double*) { \
    if (Status s = check_same(in, nin, out); !s.good()) return s;                               \
    if (Status s = need_dtype(in[0], true, #NAME); !s.good()) return s;                         \
    KILN_REQUIRE(out.dtype == in[0].dtype, ST_DTYPE, #NAME " keeps the dtype");                 \
    if (in[0].dtype == DT_FLOAT32)                                                              \
      unary_apply<float, float>(in[0], out, [](float x) { return (FEXPR); });                   \
    else                                                                                        \
      unary_apply<int32_t, int32_t>(in[0], out, [](int32_t x) { return (IEXPR); });             \
    return Status::ok();                                                                        \
  }

static inline int32_t wrap_neg(int32_t x) { return static_cast<int32_t>(0u - static_cast<uint32_t>(x)); }
KILN_UNARY_NUM(neg, -x, wrap_neg(x))
KILN_UNARY_NUM(abs, __builtin_fabsf(x), (x < 0 ? wrap_neg(x) : x))
KILN_UNARY_NUM(sign, (x != x ? x : static_cast<float>((x > 0.f) - (x < 0.f))), ((x > 0) - (x < 0)))
KILN_UNARY_NUM(relu, (x < 0.f ? 0.f : x), (x < 0 ? 0 : x))

// y = act(x + bias) row by row (Linear's bias and activation in one pass over the output)
static Status k_bias_act(const TensorView* in, int nin, const TensorView& out, const double* attrs) {
  KILN_REQUIRE(nin == 2, ST_ARG, "biasAct takes (x, bias), got ", nin, " inputs");
  const TensorView &x = in[0], &b = in[1];
  KILN_REQUIRE(x.dtype == DT_FLOAT32 && b.dtype == DT_FLOAT32 && out.dtype == DT_FLOAT32, ST_DTYPE,
               "biasAct takes and writes float32");
  KILN_REQUIRE(x.ndim >= 1 && x.contiguous() && b.contiguous() && out.contiguous() && same_shape(x, out), ST_SHAPE,
               "biasAct needs contiguous x and output of one shape, got ", shape_str(x), " -> ", shape_str(out));
  const int64_t N = x.shape[x.ndim - 1];
  KILN_REQUIRE(b.numel() == N, ST_SHAPE, "biasAct: bias has ", b.numel(), " values, the last dim of x is ", N);
  const int act = static_cast<int>(attrs[ATTR_BIAS_ACT_ACT]);
  KILN_REQUIRE(attrs[ATTR_BIAS_ACT_ACT] == act && act >= 0 && act <= 2, ST_ARG,
               "biasAct: act must be 0 (none), 1 (relu) or 2 (gelu), got ", attrs[ATTR_BIAS_ACT_ACT]);
  const int64_t M = N ? x.numel() / N : 0;
  const float* px = x.ptr<float>();
  const float* pb = b.ptr<float>();
  float* po = out.ptr<float>();
  parallel_for(M, std::max<int64_t>(1, kGrain / std::max<int64_t>(N, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const float* xr = px + i * N;
      float* o = po + i * N;
      int64_t j = 0;
      for (; j + kVL <= N; j += kVL) {
        const vfloat v = vload(xr + j) + vload(pb + j);
        vstore(o + j, act == 1 ? vsel(v < vsplat(0.f), vsplat(0.f), v) : act == 2 ? vgelu(v) : v);
      }
      for (; j < N; ++j) {
        const float v = xr[j] + pb[j];
        o[j] = act == 1 ? (v < 0.f ? 0.f : v) : act == 2 ? vgelu(vsplat(v))[0] : v;
      }
    }
  });
  return Status::ok();
}

static Status k_clamp(const TensorView* in, int nin, const TensorView& out, const double* attrs) {
  if (Status s = check_same(in, nin, out); !s.good()) return s;
  if (Status s = need_dtype(in[0], true, "clamp"); !s.good()) return s;
  KILN_REQUIRE(out.dtype == in[0].dtype, ST_DTYPE, "clamp keeps the dtype");
  const double lo = attrs[ATTR_CLAMP_MIN], hi = attrs[ATTR_CLAMP_MAX];
  KILN_REQUIRE(!(lo > hi), ST_ARG, "clamp needs min <= max, got min=", lo, " max=", hi);
  if (in[0].dtype == DT_FLOAT32) {
    const float l = static_cast<float>(lo), h = static_cast<float>(hi);
    unary_apply<float, float>(in[0], out, [l, h](float x) { return x < l ? l : (x > h ? h : x); });
  } else {
    const double lc = std::ceil(lo), hc = std::floor(hi);
    const int32_t l = sat_cast<int32_t>(lc, -2147483648.0, 2147483647.0);
    const int32_t h = sat_cast<int32_t>(hc, -2147483648.0, 2147483647.0);
    unary_apply<int32_t, int32_t>(in[0], out, [l, h](int32_t x) { return x < l ? l : (x > h ? h : x); });
  }
  return Status::ok();
}

static Status k_cast(const TensorView* in, int nin, const TensorView& out, const double*) {
  if (Status s = check_same(in, nin, out); !s.good()) return s;
  const int si = in[0].dtype, so = out.dtype;
  if (si == DT_FLOAT32 && so == DT_INT32) {
    unary_apply<int32_t, float>(in[0], out, [](float x) { return sat_cast<int32_t>(x, -2147483648.0, 2147483647.0); });
    return Status::ok();
  }
  if (si == DT_INT32 && so == DT_FLOAT32) {
    unary_apply<float, int32_t>(in[0], out, [](int32_t x) { return static_cast<float>(x); });
    return Status::ok();
  }
  if (si == DT_FLOAT32 && so == DT_FLOAT16) {
    unary_apply<uint16_t, float>(in[0], out, [](float x) { return float_to_half(x); });
    return Status::ok();
  }
  if (si == DT_FLOAT16 && so == DT_FLOAT32) {
    unary_apply<float, uint16_t>(in[0], out, [](uint16_t x) { return half_to_float(x); });
    return Status::ok();
  }
  if (si == DT_FLOAT32 && so == DT_BFLOAT16) {
    unary_apply<uint16_t, float>(in[0], out, [](float x) { return float_to_bf16(x); });
    return Status::ok();
  }
  if (si == DT_BFLOAT16 && so == DT_FLOAT32) {
    unary_apply<float, uint16_t>(in[0], out, [](uint16_t x) { return bf16_to_float(x); });
    return Status::ok();
  }
  // general path: element by element through double (exact for every source dtype)
  const TensorView* ops[2] = {&out, &in[0]};
  const StridedIter it = make_iter(ops, 2);
  const int isz = kDTypeSize[si], osz = kDTypeSize[so];
  char* o = out.bytes();
  const char* a = in[0].bytes();
  const bool to_small_float = so == DT_FLOAT16 || so == DT_BFLOAT16;
  for_each_row(it, kGrain, [&](const int64_t* off, int64_t n, const int64_t* st) {
    for (int64_t i = 0; i < n; ++i) {
      double v = load_d(a + (off[1] + i * st[1]) * isz, si);
      if (to_small_float) v = static_cast<float>(v);  // same double rounding as the reference
      store_d(o + (off[0] + i) * osz, so, v);
    }
  });
  return Status::ok();
}

// ---------------- binary ----------------
static Status check_binary(const TensorView* in, int nin, const TensorView& out, bool allow_int, const char* op) {
  if (Status s = check_same(in, nin, out); !s.good()) return s;
  KILN_REQUIRE(in[0].dtype == in[1].dtype, ST_DTYPE, "op '", op, "' needs matching dtypes, got ",
               kDTypeNames[in[0].dtype], " and ", kDTypeNames[in[1].dtype]);
  return need_dtype(in[0], allow_int, op);
}

#define KILN_BINARY_NUM(NAME, FEXPR, IEXPR)                                                     \
  static Status k_##NAME(const TensorView* in, int nin, const TensorView& out, const double*) { \
    if (Status s = check_binary(in, nin, out, true, #NAME); !s.good()) return s;                \
    KILN_REQUIRE(out.dtype == in[0].dtype, ST_DTYPE, #NAME " keeps the dtype");                 \
    if (in[0].dtype == DT_FLOAT32)                                                              \
      binary_apply<float, float>(in[0], in[1], out, [](float x, float y) { return (FEXPR); });  \
    else                                                                                        \
      binary_apply<int32_t, int32_t>(in[0], in[1], out, [](int32_t x, int32_t y) {              \
        const uint32_t ux = static_cast<uint32_t>(x), uy = static_cast<uint32_t>(y);            \
        (void)ux;                                                                               \
        (void)uy;                                                                               \
        return static_cast<int32_t>(IEXPR);                                                     \
      });                                                                                       \
    return Status::ok();                                                                        \
  }

KILN_BINARY_NUM(add, x + y, ux + uy)
KILN_BINARY_NUM(sub, x - y, ux - uy)
KILN_BINARY_NUM(mul, x* y, ux* uy)
KILN_BINARY_NUM(maximum, ((x != x || x > y) ? x : y), (x > y ? x : y))
KILN_BINARY_NUM(minimum, ((x != x || x < y) ? x : y), (x < y ? x : y))

#define KILN_BINARY_FLOAT(NAME, FEXPR)                                                          \
  static Status k_##NAME(const TensorView* in, int nin, const TensorView& out, const double*) { \
    if (Status s = check_binary(in, nin, out, false, #NAME); !s.good()) return s;               \
    KILN_REQUIRE(out.dtype == DT_FLOAT32, ST_DTYPE, #NAME " writes float32");                   \
    binary_apply<float, float>(in[0], in[1], out, [](float x, float y) { return (FEXPR); });    \
    return Status::ok();                                                                        \
  }

KILN_BINARY_FLOAT(div, x / y)
KILN_BINARY_FLOAT(pow, std::pow(x, y))
// out = f(x, g) over float32 vectors: the activation gradients, x the activation's input (or output) and g the
// gradient arriving from above
template <class F>
static Status grad_map(const TensorView* in, int nin, const TensorView& out, const char* name, F f) {
  if (Status s = check_binary(in, nin, out, false, name); !s.good()) return s;
  KILN_REQUIRE(out.dtype == DT_FLOAT32, ST_DTYPE, name, " writes float32");
  const TensorView* ops[3] = {&out, &in[0], &in[1]};
  const StridedIter it = make_iter(ops, 3);
  float* o = out.ptr<float>();
  const float* pa = in[0].ptr<float>();
  const float* pb = in[1].ptr<float>();
  for_each_row(it, kGrain, [&](const int64_t* off, int64_t n, const int64_t* st) {
    vmap2(o + off[0], pa + off[1], st[1], pb + off[2], st[2], n, f);
  });
  return Status::ok();
}
static Status k_gelu_grad(const TensorView* in, int nin, const TensorView& out, const double*) {
  return grad_map(in, nin, out, "geluGrad", [](vfloat x, vfloat g) { return vgelu_grad(x) * g; });
}
// relu's gradient: g where x > 0, else 0 (0 for a NaN x too, as where(x > 0, g, 0) gave)
static Status k_relu_grad(const TensorView* in, int nin, const TensorView& out, const double*) {
  return grad_map(in, nin, out, "reluGrad", [](vfloat x, vfloat g) { return vsel(x > vsplat(0.f), g, vfloat{}); });
}

#define KILN_COMPARE(NAME, OPR)                                                                                        \
  static Status k_##NAME(const TensorView* in, int nin, const TensorView& out, const double*) {                        \
    if (Status s = check_binary(in, nin, out, true, #NAME); !s.good()) return s;                                       \
    KILN_REQUIRE(out.dtype == DT_BOOL, ST_DTYPE, #NAME " writes bool");                                                \
    if (in[0].dtype == DT_FLOAT32)                                                                                     \
      binary_apply<uint8_t, float>(in[0], in[1], out, [](float x, float y) { return static_cast<uint8_t>(x OPR y); }); \
    else                                                                                                               \
      binary_apply<uint8_t, int32_t>(in[0], in[1], out,                                                                \
                                     [](int32_t x, int32_t y) { return static_cast<uint8_t>(x OPR y); });              \
    return Status::ok();                                                                                               \
  }

KILN_COMPARE(eq, ==)
KILN_COMPARE(ne, !=)
KILN_COMPARE(lt, <)
KILN_COMPARE(le, <=)
KILN_COMPARE(gt, >)
KILN_COMPARE(ge, >=)

template <class T>
static void where_apply(const TensorView& c, const TensorView& a, const TensorView& b, const TensorView& out) {
  const TensorView* ops[4] = {&out, &c, &a, &b};
  const StridedIter it = make_iter(ops, 4);
  T* o = out.ptr<T>();
  const uint8_t* pc = c.ptr<uint8_t>();
  const T* pa = a.ptr<T>();
  const T* pb = b.ptr<T>();
  for_each_row(it, kGrain, [&](const int64_t* off, int64_t n, const int64_t* st) {
    T* po = o + off[0];
    const uint8_t* c1 = pc + off[1];
    const T* a1 = pa + off[2];
    const T* b1 = pb + off[3];
    // contiguous condition with contiguous or scalar (stride-0) branches, as autograd's masks use them (the
    // ReLU gradient is where(x > 0, g, 0)): branch-free loops the compiler vectorises
    if (st[1] == 1 && st[2] == 1 && st[3] == 0) {
      const T bv = b1[0];
      for (int64_t i = 0; i < n; ++i) po[i] = c1[i] ? a1[i] : bv;
    } else if (st[1] == 1 && st[2] == 0 && st[3] == 1) {
      const T av = a1[0];
      for (int64_t i = 0; i < n; ++i) po[i] = c1[i] ? av : b1[i];
    } else if (st[1] == 1 && st[2] == 1 && st[3] == 1) {
      for (int64_t i = 0; i < n; ++i) po[i] = c1[i] ? a1[i] : b1[i];
    } else {
      for (int64_t i = 0; i < n; ++i) po[i] = c1[i * st[1]] ? a1[i * st[2]] : b1[i * st[3]];
    }
  });
}

static Status k_where(const TensorView* in, int nin, const TensorView& out, const double*) {
  if (Status s = check_same(in, nin, out); !s.good()) return s;
  KILN_REQUIRE(in[0].dtype == DT_BOOL, ST_DTYPE, "where's condition must be bool, got ", kDTypeNames[in[0].dtype]);
  KILN_REQUIRE(in[1].dtype == in[2].dtype && in[1].dtype == out.dtype, ST_DTYPE,
               "where's branches must share the output dtype, got ", kDTypeNames[in[1].dtype], " and ",
               kDTypeNames[in[2].dtype]);
  switch (kDTypeSize[out.dtype]) {
    case 4: where_apply<uint32_t>(in[0], in[1], in[2], out); break;
    case 2: where_apply<uint16_t>(in[0], in[1], in[2], out); break;
    default: where_apply<uint8_t>(in[0], in[1], in[2], out); break;
  }
  return Status::ok();
}

}  // namespace ew

void register_elementwise(KernelTable& t) {
  using namespace ew;
  t.fn[OP_FILL] = k_fill;
  t.fn[OP_ARANGE] = k_arange;
  t.fn[OP_NEG] = k_neg;
  t.fn[OP_ABS] = k_abs;
  t.fn[OP_SIGN] = k_sign;
  t.fn[OP_RELU] = k_relu;
  t.fn[OP_EXP] = k_exp;
  t.fn[OP_LOG] = k_log;
  t.fn[OP_SQRT] = k_sqrt;
  t.fn[OP_TANH] = k_tanh;
  t.fn[OP_SIGMOID] = k_sigmoid;
  t.fn[OP_GELU] = k_gelu;
  t.fn[OP_SILU] = k_silu;
  t.fn[OP_CLAMP] = k_clamp;
  t.fn[OP_CAST] = k_cast;
  t.fn[OP_ADD] = k_add;
  t.fn[OP_SUB] = k_sub;
  t.fn[OP_MUL] = k_mul;
  t.fn[OP_DIV] = k_div;
  t.fn[OP_POW] = k_pow;
  t.fn[OP_MAXIMUM] = k_maximum;
  t.fn[OP_MINIMUM] = k_minimum;
  t.fn[OP_EQ] = k_eq;
  t.fn[OP_NE] = k_ne;
  t.fn[OP_LT] = k_lt;
  t.fn[OP_LE] = k_le;
  t.fn[OP_GT] = k_gt;
  t.fn[OP_GE] = k_ge;
  t.fn[OP_GELU_GRAD] = k_gelu_grad;
  t.fn[OP_RELU_GRAD] = k_relu_grad;
  t.fn[OP_BIAS_ACT] = k_bias_act;
  t.fn[OP_WHERE] = k_where;
}

#endif
