// Elementwise family on CUDA: one strided `map` kernel for fill, arange, unary and binary maths, comparisons,
// clamp, cast, copy, where, biasAct, geluGrad and reluGrad (the op is a kernel argument; MAP_* codes, generated into
// kiln/tables.h from MAP_OPS in src/ops/table.ts and shared with kernels/wgsl/elementwise.wgsl). Inputs are strided
// views over the output's shape (broadcast = stride 0). float32 maths whose inputs are contiguous runs or single
// values (most of a training step's elementwise work) take map_dense instead: no index maths, float4 where aligned.
#include "common.cuh"

namespace kiln {
namespace cuda {

struct MapArgs {
  int32_t op, nin, dt[3], dto, as_int;
  const void* in[3];
  View v[3];
  void* out;
  int64_t n;
  double a, b;
};

__device__ inline float gelu(float x) { return 0.5f * x * erfcf(-x * 0.70710678118654752f); }
__device__ inline float gelu_grad(float x) {
  return 0.5f * erfcf(-x * 0.70710678118654752f) + x * 0.39894228040143268f * expf(-0.5f * x * x);
}

__device__ inline float float_op(int32_t op, float a, float b, const MapArgs& m) {
  switch (op) {
    case MAP_NEG: return -a;
    case MAP_ABS: return fabsf(a);
    case MAP_SIGN: return isnan(a) ? a : (a > 0.f ? 1.f : (a < 0.f ? -1.f : 0.f));
    case MAP_RELU: return a < 0.f ? 0.f : a;
    case MAP_EXP: return expf(a);
    case MAP_LOG: return logf(a);
    case MAP_SQRT: return sqrtf(a);
    case MAP_TANH: return tanhf(a);
    case MAP_SIGMOID: return 1.f / (1.f + expf(-a));
    case MAP_GELU: return gelu(a);
    case MAP_SILU: return a / (1.f + expf(-a));
    case MAP_CLAMP:
      return isnan(a) ? a
                      : (a < static_cast<float>(m.a) ? static_cast<float>(m.a)
                                                     : (a > static_cast<float>(m.b) ? static_cast<float>(m.b) : a));
    case MAP_ADD: return a + b;
    case MAP_SUB: return a - b;
    case MAP_MUL: return a * b;
    case MAP_DIV: return a / b;
    case MAP_POW: return powf(a, b);
    case MAP_MAXIMUM: return (isnan(a) || a > b) ? a : b;
    case MAP_MINIMUM: return (isnan(a) || a < b) ? a : b;
    case MAP_GELU_GRAD: return gelu_grad(a) * b;
    case MAP_RELU_GRAD: return a > 0.f ? b : 0.f;
    case MAP_BIAS: return a + b;
    case MAP_BIAS_RELU: {
      const float v = a + b;
      return v < 0.f ? 0.f : v;
    }
    case MAP_BIAS_GELU: return gelu(a + b);
    default: return a;
  }
}

__device__ inline int32_t int_op(int32_t op, int32_t a, int32_t b, const MapArgs& m) {
  // wrapping int32 arithmetic, through uint32 (signed overflow is undefined in C++)
  const uint32_t ua = static_cast<uint32_t>(a), ub = static_cast<uint32_t>(b);
  switch (op) {
    case MAP_NEG: return static_cast<int32_t>(0u - ua);
    case MAP_ABS: return a < 0 ? static_cast<int32_t>(0u - ua) : a;
    case MAP_SIGN: return a > 0 ? 1 : (a < 0 ? -1 : 0);
    case MAP_RELU: return a < 0 ? 0 : a;
    case MAP_CLAMP: {
      const int32_t lo = static_cast<int32_t>(m.a), hi = static_cast<int32_t>(m.b);
      return a < lo ? lo : (a > hi ? hi : a);
    }
    case MAP_ADD: return static_cast<int32_t>(ua + ub);
    case MAP_SUB: return static_cast<int32_t>(ua - ub);
    case MAP_MUL: return static_cast<int32_t>(ua * ub);
    case MAP_MAXIMUM: return a > b ? a : b;
    case MAP_MINIMUM: return a < b ? a : b;
    default: return a;
  }
}

template <class T>
__device__ inline uint8_t compare(int32_t op, T a, T b, bool unordered) {
  if (unordered) return op == MAP_NE ? 1 : 0;
  switch (op) {
    case MAP_EQ: return a == b;
    case MAP_NE: return a != b;
    case MAP_LT: return a < b;
    case MAP_LE: return a <= b;
    case MAP_GT: return a > b;
    default: return a >= b;
  }
}

__global__ void map(MapArgs m) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t i = e; i < m.n; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (m.op == MAP_FILL) {  // the host passes integer fills already saturated to int32 (as_int)
      if (m.as_int)
        store_i(m.out, m.dto, i, static_cast<int32_t>(m.a));
      else
        store_f(m.out, m.dto, i, static_cast<float>(m.a));
      continue;
    }
    if (m.op == MAP_ARANGE) {
      const double v = m.a + static_cast<double>(i) * m.b;  // in double, as cpu
      if (m.as_int)                                         // truncate and saturate like cpu's sat_cast (NaN -> 0)
        store_i(m.out, m.dto, i,
                v != v ? 0
                       : (v <= -2147483648.0 ? static_cast<int32_t>(-2147483647 - 1)
                                             : (v >= 2147483647.0 ? 2147483647 : static_cast<int32_t>(trunc(v)))));
      else
        store_f(m.out, m.dto, i, static_cast<float>(v));
      continue;
    }
    int64_t idx[3] = {0, 0, 0};
    for (int k = 0; k < m.nin; ++k) idx[k] = view_index(m.v[k], i);
    if (m.op == MAP_COPY) {
      copy_elem(m.in[0], idx[0], m.out, i, dt_size(m.dto));
      continue;
    }
    if (m.op == MAP_WHERE) {
      const bool c = static_cast<const uint8_t*>(m.in[0])[idx[0]] != 0;
      copy_elem(c ? m.in[1] : m.in[2], c ? idx[1] : idx[2], m.out, i, dt_size(m.dto));
      continue;
    }
    if (m.op == MAP_CAST) {
      if (is_int_dt(m.dt[0]) && is_int_dt(m.dto))
        store_i(m.out, m.dto, i, load_i(m.in[0], m.dt[0], idx[0]));
      else
        store_f(m.out, m.dto, i, load_f(m.in[0], m.dt[0], idx[0]));
      continue;
    }
    const bool cmp = m.op >= MAP_EQ && m.op <= MAP_GE;
    if (m.as_int) {
      const int32_t a = load_i(m.in[0], m.dt[0], idx[0]);
      const int32_t b = m.nin > 1 ? load_i(m.in[1], m.dt[1], idx[1]) : 0;
      if (cmp)
        static_cast<uint8_t*>(m.out)[i] = compare<int32_t>(m.op, a, b, false);
      else
        store_i(m.out, m.dto, i, int_op(m.op, a, b, m));
    } else {
      const float a = load_f(m.in[0], m.dt[0], idx[0]);
      const float b = m.nin > 1 ? load_f(m.in[1], m.dt[1], idx[1]) : 0.f;
      if (cmp)
        static_cast<uint8_t*>(m.out)[i] = compare<float>(m.op, a, b, isnan(a) || isnan(b));
      else
        store_f(m.out, m.dto, i, float_op(m.op, a, b, m));
    }
  }
}

// float32 maths over dense runs: every input one contiguous float32 run (stride 1) or one value (stride 0), the
// output float32. No per-dimension index maths (the strided kernel does a 64-bit divide and remainder per dim per
// input); four elements a thread through float4 where the runs are 16-byte aligned (vec4). float_op as in `map`,
// so the same bits.
__global__ void map_dense(MapArgs m, bool vec4) {
  const float* x = static_cast<const float*>(m.in[0]) + m.v[0].offset;
  const float* y = m.nin > 1 ? static_cast<const float*>(m.in[1]) + m.v[1].offset : nullptr;
  const int64_t sx = m.v[0].ndim == 1 ? m.v[0].strides[0] : 0,
                sy = m.nin > 1 && m.v[1].ndim == 1 ? m.v[1].strides[0] : 0;
  float* o = static_cast<float*>(m.out);
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t done = 0;
  if (vec4) {
    const int64_t n4 = m.n / 4;
    for (int64_t i = e; i < n4; i += stride) {
      const float4 a = sx ? reinterpret_cast<const float4*>(x)[i] : make_float4(x[0], x[0], x[0], x[0]);
      float4 b = make_float4(0.f, 0.f, 0.f, 0.f);
      if (y) b = sy ? reinterpret_cast<const float4*>(y)[i] : make_float4(y[0], y[0], y[0], y[0]);
      reinterpret_cast<float4*>(o)[i] = make_float4(float_op(m.op, a.x, b.x, m), float_op(m.op, a.y, b.y, m),
                                                    float_op(m.op, a.z, b.z, m), float_op(m.op, a.w, b.w, m));
    }
    done = 4 * n4;
  }
  for (int64_t i = done + e; i < m.n; i += stride) o[i] = float_op(m.op, x[i * sx], y ? y[i * sy] : 0.f, m);
}

/** Whether run_map's operands suit map_dense (float maths, float32 throughout, every merged view dense). */
static bool dense_map(const MapArgs& m) {
  const bool special = m.op == MAP_FILL || m.op == MAP_ARANGE || m.op == MAP_COPY || m.op == MAP_WHERE ||
                       m.op == MAP_CAST || (m.op >= MAP_EQ && m.op <= MAP_GE);
  if (special || m.as_int || m.dto != DT_FLOAT32 || m.nin < 1 || m.nin > 2) return false;
  for (int k = 0; k < m.nin; ++k)
    if (m.dt[k] != DT_FLOAT32 || m.v[k].ndim > 1 ||
        (m.v[k].ndim == 1 && m.v[k].strides[0] != 0 && m.v[k].strides[0] != 1))
      return false;
  return true;
}

Status run_map(int32_t op, const TensorView* in, int nin, const TensorView& out, double a, double b, bool as_int,
               const char* name) {
  MapArgs m{};
  m.op = op;
  m.nin = nin;
  m.dto = out.dtype;
  m.as_int = as_int ? 1 : 0;
  m.out = static_cast<char*>(out.data) + out.offset * kDTypeSize[out.dtype];
  m.n = out.numel();
  m.a = a;
  m.b = b;
  if (m.n == 0) return Status::ok();
  const TensorView* views[3] = {};
  for (int k = 0; k < nin; ++k) {
    KILN_REQUIRE(same_shape(in[k], out), ST_SHAPE, name, ": input ", k, " is ", shape_str(in[k]), " but the output is ",
                 shape_str(out), " (inputs arrive broadcast)");
    views[k] = &in[k];
    m.in[k] = in[k].data;
    m.dt[k] = in[k].dtype;
  }
  View merged[3];
  if (nin > 0) {
    KILN_REQUIRE(merge_views(out.shape, out.ndim, views, nin, merged), ST_SHAPE, name, ": views of more than ",
                 kViewDims, " dims that cannot be merged");
    for (int k = 0; k < nin; ++k) m.v[k] = merged[k];
  }
  const unsigned blocks = blocks_for(m.n < (int64_t{1} << 24) ? m.n : (int64_t{1} << 24));
  if (dense_map(m)) {
    bool vec4 = reinterpret_cast<uintptr_t>(m.out) % 16 == 0;
    for (int k = 0; k < nin; ++k) {
      const bool run = m.v[k].ndim == 1 && m.v[k].strides[0] == 1;
      if (run) vec4 = vec4 && reinterpret_cast<uintptr_t>(static_cast<const float*>(m.in[k]) + m.v[k].offset) % 16 == 0;
    }
    map_dense<<<vec4 ? blocks_for((m.n + 3) / 4 < (int64_t{1} << 24) ? (m.n + 3) / 4 : (int64_t{1} << 24)) : blocks,
                kThreads, 0, stream()>>>(m, vec4);
    return launched(name);
  }
  map<<<blocks, kThreads, 0, stream()>>>(m);
  return launched(name);
}

#define UNARY(NAME, OP, INTOK)                                                                  \
  static Status k_##NAME(const TensorView* in, int nin, const TensorView& out, const double*) { \
    KILN_REQUIRE(nin == 1, ST_ARG, #NAME " takes 1 input");                                     \
    return run_map(OP, in, 1, out, 0, 0, (INTOK) && in[0].dtype == DT_INT32, #NAME);            \
  }
#define BINARY(NAME, OP, INTOK)                                                                 \
  static Status k_##NAME(const TensorView* in, int nin, const TensorView& out, const double*) { \
    KILN_REQUIRE(nin == 2, ST_ARG, #NAME " takes 2 inputs");                                    \
    KILN_REQUIRE(in[0].dtype == in[1].dtype, ST_DTYPE, #NAME ": inputs must share a dtype");    \
    return run_map(OP, in, 2, out, 0, 0, (INTOK) && in[0].dtype == DT_INT32, #NAME);            \
  }
// clang-format off (macro invocations without semicolons: one kernel launcher each)
UNARY(neg, MAP_NEG, true)
UNARY(abs, MAP_ABS, true)
UNARY(sign, MAP_SIGN, true)
UNARY(relu, MAP_RELU, true)
UNARY(exp, MAP_EXP, false)
UNARY(log, MAP_LOG, false)
UNARY(sqrt, MAP_SQRT, false)
UNARY(tanh, MAP_TANH, false)
UNARY(sigmoid, MAP_SIGMOID, false)
UNARY(gelu, MAP_GELU, false)
UNARY(silu, MAP_SILU, false)
BINARY(add, MAP_ADD, true)
BINARY(sub, MAP_SUB, true)
BINARY(mul, MAP_MUL, true)
BINARY(div, MAP_DIV, false)
BINARY(pow, MAP_POW, false)
BINARY(maximum, MAP_MAXIMUM, true)
BINARY(minimum, MAP_MINIMUM, true)
BINARY(eq, MAP_EQ, true)
BINARY(ne, MAP_NE, true)
BINARY(lt, MAP_LT, true)
BINARY(le, MAP_LE, true)
BINARY(gt, MAP_GT, true)
BINARY(ge, MAP_GE, true)
BINARY(gelu_grad, MAP_GELU_GRAD, false)
BINARY(relu_grad, MAP_RELU_GRAD, false)
// clang-format on

static Status k_fill(const TensorView*, int, const TensorView& out, const double* at) {
  const double v = at[ATTR_FILL_VALUE];
  if (out.dtype == DT_INT32 || out.dtype == DT_INT8 || out.dtype == DT_UINT8) {
    // truncate toward zero and saturate (NaN -> 0) like src/tensor/dtype.ts, before any cast can overflow
    const double t =
        v != v ? 0.0 : (v <= -2147483648.0 ? -2147483648.0 : (v >= 2147483647.0 ? 2147483647.0 : std::trunc(v)));
    return run_map(MAP_FILL, nullptr, 0, out, t, 0, true, "fill");
  }
  if (out.dtype == DT_BOOL)  // decided in double, as cpu: a tiny value is true even where float rounds it to 0
    return run_map(MAP_FILL, nullptr, 0, out, v != 0.0 || v != v ? 1.0 : 0.0, 0, true, "fill");
  return run_map(MAP_FILL, nullptr, 0, out, v, 0, false, "fill");  // floats round
}
static Status k_arange(const TensorView*, int, const TensorView& out, const double* at) {
  // int32 output: start + i * step in double, truncated and saturated per element (cpu's rule), any start/step
  return run_map(MAP_ARANGE, nullptr, 0, out, at[ATTR_ARANGE_START], at[ATTR_ARANGE_STEP], out.dtype == DT_INT32,
                 "arange");
}
static Status k_clamp(const TensorView* in, int nin, const TensorView& out, const double* at) {
  KILN_REQUIRE(nin == 1, ST_ARG, "clamp takes 1 input");
  double lo = at[ATTR_CLAMP_MIN], hi = at[ATTR_CLAMP_MAX];
  KILN_REQUIRE(lo <= hi, ST_ARG, "clamp needs min <= max, got min=", lo, " max=", hi);
  const bool ints = in[0].dtype == DT_INT32;
  if (ints) {
    lo = lo < -2147483648.0 ? -2147483648.0 : std::ceil(lo);
    hi = hi > 2147483647.0 ? 2147483647.0 : std::floor(hi);
  }
  return run_map(MAP_CLAMP, in, 1, out, lo, hi, ints, "clamp");
}
static Status k_cast(const TensorView* in, int nin, const TensorView& out, const double*) {
  KILN_REQUIRE(nin == 1, ST_ARG, "cast takes 1 input");
  return run_map(in[0].dtype == out.dtype ? MAP_COPY : MAP_CAST, in, 1, out, 0, 0, false, "cast");
}
static Status k_where(const TensorView* in, int nin, const TensorView& out, const double*) {
  KILN_REQUIRE(nin == 3 && in[0].dtype == DT_BOOL && in[1].dtype == out.dtype && in[2].dtype == out.dtype, ST_DTYPE,
               "where takes (bool condition, a, b) with a and b of the output's dtype");
  return run_map(MAP_WHERE, in, 3, out, 0, 0, false, "where");
}
static Status k_bias_act(const TensorView* in, int nin, const TensorView& out, const double* at) {
  KILN_REQUIRE(nin == 2, ST_ARG, "biasAct takes (x, bias)");
  const int act = static_cast<int>(at[ATTR_BIAS_ACT_ACT]);
  KILN_REQUIRE(at[ATTR_BIAS_ACT_ACT] == act && act >= 0 && act <= 2, ST_ARG,
               "biasAct: act must be 0 (none), 1 (relu) or 2 (gelu), got ", at[ATTR_BIAS_ACT_ACT]);
  const TensorView& x = in[0];
  KILN_REQUIRE(x.ndim >= 1 && in[1].numel() == x.shape[x.ndim - 1] && in[1].contiguous(), ST_SHAPE,
               "biasAct: bias must be [", x.ndim ? x.shape[x.ndim - 1] : 0, "]");
  TensorView bias = x;  // the bias as a view of x's shape: stride 0 but along the last dim
  bias.data = in[1].data;
  bias.offset = in[1].offset;
  bias.dtype = in[1].dtype;
  for (int d = 0; d < x.ndim; ++d) bias.strides[d] = d == x.ndim - 1 ? 1 : 0;
  const TensorView both[2] = {x, bias};
  return run_map(act == 1 ? MAP_BIAS_RELU : act == 2 ? MAP_BIAS_GELU : MAP_BIAS, both, 2, out, 0, 0, false, "biasAct");
}

bool merge_views(const int64_t* shape, int ndim, const TensorView* const* views, int nviews, View* out) {
  int n = 0;
  int64_t sh[kMaxDims];
  int64_t st[3][kMaxDims];
  for (int d = 0; d < ndim; ++d) {
    if (shape[d] == 1) continue;
    bool merge = n > 0;
    for (int k = 0; k < nviews && merge; ++k) merge = st[k][n - 1] == views[k]->strides[d] * shape[d];
    if (merge) {
      sh[n - 1] *= shape[d];
      for (int k = 0; k < nviews; ++k) st[k][n - 1] = views[k]->strides[d];
    } else {
      sh[n] = shape[d];
      for (int k = 0; k < nviews; ++k) st[k][n] = views[k]->strides[d];
      ++n;
    }
  }
  if (n > kViewDims) return false;
  for (int k = 0; k < nviews; ++k) {
    out[k].offset = views[k]->offset;
    out[k].ndim = n;
    for (int d = 0; d < n; ++d) {
      out[k].shape[d] = sh[d];
      out[k].strides[d] = st[k][d];
    }
  }
  return true;
}

void register_elementwise(KernelTable& t) {
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

}  // namespace cuda
}  // namespace kiln
