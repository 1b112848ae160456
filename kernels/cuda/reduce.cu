// Reduce family on CUDA: sum/max/min/argmax/argmin over an axis range ([outer, R, inner]: a block per row with
// warp-shuffle sums when inner == 1, a thread per output otherwise; when there are too few rows or outputs to fill
// the device, the reduced axis is cut into fixed chunks whose partial results a second pass combines in order),
// softmax/logSoftmax and fused softmax cross-entropy forward and backward (labels checked on the device) with a
// warp per row, NaN-ignoring column statistics and quantiles (a block per column; quantiles by radix select), and
// row hashes. Inputs are contiguous (the dispatcher copies views first).
#include "common.cuh"
#include "kiln/layer_norm.h"

namespace kiln {
namespace cuda {

enum RedOp { R_SUM, R_MAX, R_MIN, R_ARGMAX, R_ARGMIN };

template <class T>
__device__ inline T combine(int op, T a, T v) {
  if (op == R_SUM) {
    if constexpr (std::is_same<T, int32_t>::value)  // wraps like cpu (unsigned arithmetic: no signed overflow)
      return static_cast<int32_t>(static_cast<uint32_t>(a) + static_cast<uint32_t>(v));
    else
      return a + v;
  }
  if constexpr (std::is_same<T, float>::value) {
    if (isnan(a) || isnan(v)) return nanf("");
  }
  if (op == R_MAX) return v > a ? v : a;
  return v < a ? v : a;
}

// combine() for block_all (common.cuh), which combines in an order fixed by the thread layout, so the bits do not
// depend on the device
struct Combine {
  int op;
  template <class T>
  __device__ T operator()(T a, T b) const {
    return combine<T>(op, a, b);
  }
};

// The reduction of p[k * stride] for k = k0, k0 + step, ... below k1, from acc. A float sum adds 32 values apart
// before each joins acc: one running float sum over a thread's 512 values put a column sum of 2^18 values 1e-5 off.
template <class T>
__device__ inline T fold_strided(int op, T acc, const T* p, int64_t k0, int64_t k1, int64_t step, int64_t stride) {
  if constexpr (std::is_same<T, float>::value) {
    if (op == R_SUM) {
      for (int64_t k = k0; k < k1;) {
        float part = 0.f;
        for (int i = 0; i < 32 && k < k1; ++i, k += step) part += p[k * stride];
        acc += part;
      }
      return acc;
    }
  }
  for (int64_t k = k0; k < k1; k += step) acc = combine<T>(op, acc, p[k * stride]);
  return acc;
}

// y[b] = the reduction of row b / chunks of x ([rows][r]), over its values [c * chunk, (c + 1) * chunk) with
// c = b % chunks (chunks = 1: the whole row). Launched with kThreads threads.
template <class T>
__global__ void reduce_rows(const T* x, T* y, int op, int64_t r, int64_t chunks, int64_t chunk) {
  const int64_t b = blockIdx.x, c = b % chunks;
  const T* row = x + (b / chunks) * r;
  const int64_t k0 = c * chunk, k1 = k0 + chunk < r ? k0 + chunk : r;
  T acc = op == R_SUM ? T(0) : row[k0];
  acc = fold_strided<T>(op, acc, row, k0 + threadIdx.x, k1, kThreads, 1);
  acc = block_all(acc, Combine{op});
  if (threadIdx.x == 0) y[b] = acc;
}

// A thread per output over a chunk of the reduced axis: part[c][o] = the reduction of x[o / inner, k, o % inner]
// for k in [c * chunk, (c + 1) * chunk), c = blockIdx.y
template <class T>
__global__ void reduce_cols(const T* x, T* part, int op, int64_t outer, int64_t r, int64_t inner, int64_t chunk) {
  const int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x, n = outer * inner;
  if (o >= n) return;
  const int64_t k0 = static_cast<int64_t>(blockIdx.y) * chunk, k1 = k0 + chunk < r ? k0 + chunk : r;
  const T* base = x + (o / inner) * r * inner + o % inner;
  T acc = op == R_SUM ? T(0) : base[k0 * inner];
  acc = fold_strided<T>(op, acc, base, k0, k1, 1, inner);
  part[static_cast<int64_t>(blockIdx.y) * n + o] = acc;
}

template <class T>
__global__ void arg_reduce(const T* x, int32_t* y, bool is_max, int64_t outer, int64_t r, int64_t inner) {
  const int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (o >= outer * inner) return;
  const T* base = x + (o / inner) * r * inner + o % inner;
  int64_t best = 0;
  T bv = base[0];
  for (int64_t k = 1; k < r; ++k) {
    if constexpr (std::is_same<T, float>::value) {
      if (isnan(bv)) break;
    }
    const T v = base[k * inner];
    bool better = is_max ? v > bv : v < bv;
    if constexpr (std::is_same<T, float>::value) better = better || isnan(v);
    if (better) {
      bv = v;
      best = k;
    }
  }
  y[o] = static_cast<int32_t>(best);
}

// Does (b, ib) win over (a, ia) in an arg reduction? A NaN over any number (float), then the extreme, then the
// smaller index between equals: a total order, so any combining order finds arg_reduce's sequential answer.
template <class T>
__device__ inline bool arg_wins(T a, int32_t ia, T b, int32_t ib, bool is_max) {
  if constexpr (std::is_same<T, float>::value) {
    if (isnan(a) || isnan(b)) return isnan(b) && (!isnan(a) || ib < ia);
  }
  if (b == a) return ib < ia;
  return is_max ? b > a : b < a;
}
template <class T>
__device__ inline void arg_take(bool is_max, T& v, int32_t& i, T ov, int32_t oi) {
  if (arg_wins(v, i, ov, oi, is_max)) v = ov, i = oi;
}

constexpr int kColPhases = kThreads / 32;

// argmax/argmin of long rows (inner == 1) when they are few: a block a row, its threads striding over the row
// (coalesced), then each warp's shuffles and the warps' results in thread 0
template <class T>
__global__ void arg_rows(const T* x, int32_t* y, bool is_max, int64_t r) {
  const T* row = x + static_cast<int64_t>(blockIdx.x) * r;
  T v = row[0];  // a candidate every thread may start from
  int32_t best = 0;
  for (int64_t k = threadIdx.x; k < r; k += kThreads) arg_take(is_max, v, best, row[k], static_cast<int32_t>(k));
  for (int s = 16; s > 0; s >>= 1) {
    const T ov = __shfl_xor_sync(0xffffffffu, v, s);
    const int32_t oi = __shfl_xor_sync(0xffffffffu, best, s);
    arg_take(is_max, v, best, ov, oi);
  }
  __shared__ T wv[kColPhases];
  __shared__ int32_t wi[kColPhases];
  if ((threadIdx.x & 31) == 0) wv[threadIdx.x >> 5] = v, wi[threadIdx.x >> 5] = best;
  __syncthreads();
  if (threadIdx.x != 0) return;
  for (int w = 1; w < kColPhases; ++w) arg_take(is_max, v, best, wv[w], wi[w]);
  y[blockIdx.x] = best;
}

// argmax/argmin down a long axis (inner > 1) with few outputs: 32 adjacent outputs of one outer slice a block
// (coalesced), its warps taking every kColPhases-th k; tiles = ceil(inner / 32)
template <class T>
__global__ void arg_cols(const T* x, int32_t* y, bool is_max, int64_t r, int64_t inner, int64_t tiles) {
  __shared__ T pv[kColPhases][32];
  __shared__ int32_t pi[kColPhases][32];
  const int lane = threadIdx.x & 31, ph = threadIdx.x >> 5;
  const int64_t j = blockIdx.x % tiles * 32 + lane;
  const bool live = j < inner;
  const int64_t base = blockIdx.x / tiles * r * inner + j;
  T v{};
  int32_t best = 0;
  if (live) {
    v = x[base];
    for (int64_t k = ph; k < r; k += kColPhases)
      arg_take(is_max, v, best, x[base + k * inner], static_cast<int32_t>(k));
  }
  pv[ph][lane] = v;
  pi[ph][lane] = best;
  __syncthreads();
  if (!live || ph != 0) return;
  for (int p = 1; p < kColPhases; ++p) arg_take(is_max, v, best, pv[p][lane], pi[p][lane]);
  y[blockIdx.x / tiles * inner + j] = best;
}

// arg_rows for at least this many values a row, when there are fewer than kFewRows rows
constexpr int64_t kArgRowLen = 1024;

static void dims3(const TensorView& v, int a0, int a1, int64_t& outer, int64_t& r, int64_t& inner) {
  outer = r = inner = 1;
  for (int d = 0; d < v.ndim; ++d) (d < a0 ? outer : d < a1 ? r : inner) *= v.shape[d];
}

// one helper serves sum/max/min (axis range) and argmax/argmin (one axis at the range's start)
static_assert(ATTR_ARGMAX_AXIS == ATTR_AXES_AXIS_START && ATTR_ARGMIN_AXIS == ATTR_AXES_AXIS_START);

// Where the reduced axis is cut (fixed sizes, not the device's, so a result is the same on every GPU): rows (inner
// == 1) of more than kRowChunk values when there are fewer than kFewRows rows, each chunk a block; columns
// (inner > 1, a thread per output) longer than kColChunk when there are fewer than kFewOutputs outputs, each
// chunk a grid row. A whole-tensor sum ran on one block of one SM; a sum over axis 0 of [100000, 10] on 10 threads.
constexpr int64_t kRowChunk = 32768, kFewRows = 1024, kColChunk = 512, kFewOutputs = 65536;

template <class T>
static Status reduce_typed(const T* x, T* y, int op, int64_t outer, int64_t r, int64_t inner, const char* name) {
  if (inner == 1 && r >= 1024 && outer <= 2147483647) {
    const int64_t chunks = outer < kFewRows && r > kRowChunk ? (r + kRowChunk - 1) / kRowChunk : 1;
    if (chunks == 1) {
      reduce_rows<T><<<static_cast<unsigned>(outer), kThreads, 0, stream()>>>(x, y, op, r, 1, r);
      return launched(name);
    }
    const uint64_t bytes = static_cast<uint64_t>(outer * chunks) * sizeof(T);
    void* part = nullptr;
    if (Status s = scratch(bytes, &part); !s.good()) return s;
    T* pt = static_cast<T*>(part);
    reduce_rows<T><<<static_cast<unsigned>(outer * chunks), kThreads, 0, stream()>>>(x, pt, op, r, chunks, kRowChunk);
    Status s = launched(name);
    if (s.good()) {
      reduce_rows<T><<<static_cast<unsigned>(outer), kThreads, 0, stream()>>>(pt, y, op, chunks, 1, chunks);
      s = launched(name);
    }
    release_scratch(part, bytes);
    return s;
  }
  const int64_t n = outer * inner;
  const int64_t chunks = n < kFewOutputs && r > kColChunk ? (r + kColChunk - 1) / kColChunk : 1;
  if (chunks == 1 || chunks > 65535) {
    reduce_cols<T><<<blocks_for(n), kThreads, 0, stream()>>>(x, y, op, outer, r, inner, r > 0 ? r : 1);
    return launched(name);
  }
  const uint64_t bytes = static_cast<uint64_t>(n * chunks) * sizeof(T);
  void* part = nullptr;
  if (Status s = scratch(bytes, &part); !s.good()) return s;
  T* pt = static_cast<T*>(part);
  reduce_cols<T><<<dim3(blocks_for(n), static_cast<unsigned>(chunks)), kThreads, 0, stream()>>>(x, pt, op, outer, r,
                                                                                                inner, kColChunk);
  Status s = launched(name);
  if (s.good()) {
    // the parts [chunks][n] reduced over their first axis, in chunk order
    reduce_cols<T><<<blocks_for(n), kThreads, 0, stream()>>>(pt, y, op, 1, chunks, n, chunks);
    s = launched(name);
  }
  release_scratch(part, bytes);
  return s;
}

// argmax/argmin: a block a row for few long rows, 32-output tiles for few outputs down a long axis (rules of
// the shape alone), else a thread an output
template <class T>
static Status arg_launch(const T* x, int32_t* y, bool is_max, int64_t outer, int64_t r, int64_t inner,
                         const char* name) {
  const int64_t tiles = (inner + 31) / 32;
  if (inner == 1 && r >= kArgRowLen && outer < kFewRows)
    arg_rows<T><<<static_cast<unsigned>(outer), kThreads, 0, stream()>>>(x, y, is_max, r);
  else if (inner > 1 && r >= 64 && outer * inner < kFewOutputs)
    arg_cols<T><<<static_cast<unsigned>(outer * tiles), kThreads, 0, stream()>>>(x, y, is_max, r, inner, tiles);
  else
    arg_reduce<T><<<blocks_for(outer * inner), kThreads, 0, stream()>>>(x, y, is_max, outer, r, inner);
  return launched(name);
}

static Status reduce(const TensorView* in, int nin, const TensorView& out, const double* at, int op, const char* name) {
  KILN_REQUIRE(nin == 1 && in[0].contiguous(), ST_ARG, name, " takes one contiguous input");
  const TensorView& x = in[0];
  const bool arg = op >= R_ARGMAX;
  const int a0 = static_cast<int>(at[ATTR_AXES_AXIS_START]),
            a1 = arg ? a0 + 1 : static_cast<int>(at[ATTR_AXES_AXIS_END]);
  KILN_REQUIRE(a0 >= 0 && a0 <= a1 && a1 <= x.ndim, ST_ARG, name, ": bad axis range [", a0, ", ", a1, ") for ", x.ndim,
               " dims");
  int64_t outer, r, inner;
  dims3(x, a0, a1, outer, r, inner);
  KILN_REQUIRE(out.numel() == outer * inner, ST_SHAPE, name, " writes ", outer * inner, " values");
  if (outer * inner == 0) return Status::ok();
  KILN_REQUIRE(op == R_SUM || r > 0, ST_SHAPE, name, " over an empty axis has no identity; the reduced axes of ",
               shape_str(x), " have size 0");
  const bool ints = x.dtype == DT_INT32;
  KILN_REQUIRE(ints || x.dtype == DT_FLOAT32, ST_DTYPE, name, " takes float32 or int32");
  if (arg) {
    KILN_REQUIRE(out.dtype == DT_INT32, ST_DTYPE, name, " writes int32");
    KILN_REQUIRE(r <= 2147483647, ST_SHAPE, name, ": the reduced axis of ", shape_str(x),
                 " is longer than an int32 index reaches");
    if (ints) return arg_launch(x.ptr<int32_t>(), out.ptr<int32_t>(), op == R_ARGMAX, outer, r, inner, name);
    return arg_launch(x.ptr<float>(), out.ptr<int32_t>(), op == R_ARGMAX, outer, r, inner, name);
  }
  KILN_REQUIRE(out.dtype == x.dtype, ST_DTYPE, name, " writes its input's dtype");
  if (ints) return reduce_typed<int32_t>(x.ptr<int32_t>(), out.ptr<int32_t>(), op, outer, r, inner, name);
  return reduce_typed<float>(x.ptr<float>(), out.ptr<float>(), op, outer, r, inner, name);
}

static Status k_sum(const TensorView* in, int nin, const TensorView& out, const double* at) {
  return reduce(in, nin, out, at, R_SUM, "sum");
}
static Status k_max(const TensorView* in, int nin, const TensorView& out, const double* at) {
  return reduce(in, nin, out, at, R_MAX, "max");
}
static Status k_min(const TensorView* in, int nin, const TensorView& out, const double* at) {
  return reduce(in, nin, out, at, R_MIN, "min");
}
static Status k_argmax(const TensorView* in, int nin, const TensorView& out, const double* at) {
  return reduce(in, nin, out, at, R_ARGMAX, "argmax");
}
static Status k_argmin(const TensorView* in, int nin, const TensorView& out, const double* at) {
  return reduce(in, nin, out, at, R_ARGMIN, "argmin");
}

// A row x[0, n) over a warp's lanes (lane k reads k, k + 32, ...), in every lane: its max m (NaN ignored; 0 when
// nothing is above -inf), the sum of exp(x - m), and whether any value is NaN
struct RowExp {
  float m, s;
  bool nan;
};
__device__ inline RowExp warp_row_exp(const float* x, int64_t n, int lane) {
  float m = -INFINITY;
  bool nan = false;
  for (int64_t k = lane; k < n; k += 32) {
    nan |= isnan(x[k]);
    m = x[k] > m ? x[k] : m;
  }
  m = warp_all(m, [](float a, float b) { return b > a ? b : a; });
  if (m == -INFINITY) m = 0.f;
  float s = 0.f;
  for (int64_t k = lane; k < n; k += 32) s += expf(x[k] - m);
  return RowExp{m, warp_sum_all(s), __any_sync(0xffffffffu, nan) != 0};
}

constexpr int kRowsPerBlock = kThreads / 32;  // a warp per row

// Rows (inner == 1): a warp per row, its lanes striding over the row (coalesced). Else a thread per line (the
// launcher's choice for many lines of fewer than 32 columns; softmax_cols takes the rest).
template <bool Rows>
__global__ void softmax(const float* x, float* y, bool log, int64_t outer, int64_t n, int64_t inner) {
  if constexpr (Rows) {
    const int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (r >= outer) return;  // a whole warp leaves together
    const float* xr = x + r * n;
    const RowExp e = warp_row_exp(xr, n, lane);
    const float ls = logf(e.s);  // log-softmax (x - m) - log s: x - (m + log s) rounds log s away at large |m|
    for (int64_t k = lane; k < n; k += 32) y[r * n + k] = log ? (xr[k] - e.m) - ls : expf(xr[k] - e.m) / e.s;
    return;
  }
  const int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (o >= outer * inner) return;
  const int64_t base = (o / inner) * n * inner + o % inner;
  float m = -INFINITY;
  for (int64_t k = 0; k < n; ++k) {
    const float v = x[base + k * inner];
    if (v > m) m = v;
  }
  if (m == -INFINITY) m = 0.f;
  float s = 0.f;
  for (int64_t k = 0; k < n; ++k) s += expf(x[base + k * inner] - m);
  const float ls = logf(s);
  for (int64_t k = 0; k < n; ++k) {
    const int64_t i = base + k * inner;
    y[i] = log ? (x[i] - m) - ls : expf(x[i] - m) / s;
  }
}

constexpr int64_t kFewLines = 65536;

// Softmax down the n rows of 32 adjacent columns of one outer slice (inner > 1): lane = column, so reads are
// coalesced, and the kColPhases warps take every kColPhases-th row. Each column's partial maxima, then partial
// sums, are combined over the phases in phase order (the same bits on any device). tiles = ceil(inner / 32).
__global__ void softmax_cols(const float* x, float* y, bool log, int64_t n, int64_t inner, int64_t tiles) {
  __shared__ float part[2][kColPhases][32];
  const int lane = threadIdx.x & 31, ph = threadIdx.x >> 5;
  const int64_t j = blockIdx.x % tiles * 32 + lane;
  const bool live = j < inner;
  const int64_t base = blockIdx.x / tiles * n * inner + j;
  float m = -INFINITY, s = 0.f;
  if (live)
    for (int64_t k = ph; k < n; k += kColPhases) {
      const float v = x[base + k * inner];
      if (v > m) m = v;
    }
  part[0][ph][lane] = m;
  __syncthreads();
  m = part[0][0][lane];
  for (int p = 1; p < kColPhases; ++p)
    if (part[0][p][lane] > m) m = part[0][p][lane];
  if (m == -INFINITY) m = 0.f;
  if (live)
    for (int64_t k = ph; k < n; k += kColPhases) s += expf(x[base + k * inner] - m);
  part[1][ph][lane] = s;
  __syncthreads();
  s = part[1][0][lane];
  for (int p = 1; p < kColPhases; ++p) s += part[1][p][lane];
  if (!live) return;
  const float ls = logf(s);
  for (int64_t k = ph; k < n; k += kColPhases) {
    const int64_t i = base + k * inner;
    y[i] = log ? (x[i] - m) - ls : expf(x[i] - m) / s;
  }
}

static_assert(ATTR_LOG_SOFTMAX_AXIS == ATTR_SOFTMAX_AXIS);

static Status launch_softmax(const TensorView* in, int nin, const TensorView& out, const double* at, bool log) {
  KILN_REQUIRE(nin == 1 && in[0].contiguous() && in[0].dtype == DT_FLOAT32 && same_shape(in[0], out), ST_ARG,
               "softmax takes one contiguous float32 input");
  const int axis = static_cast<int>(at[ATTR_SOFTMAX_AXIS]);
  KILN_REQUIRE(axis >= 0 && axis < in[0].ndim, ST_ARG, "softmax: axis ", axis, " out of range");
  int64_t outer, n, inner;
  dims3(in[0], axis, axis + 1, outer, n, inner);
  if (outer * n * inner == 0) return Status::ok();
  const int64_t tiles = (inner + 31) / 32;
  if (inner == 1)
    softmax<true>
        <<<blocks_for(outer * 32), kThreads, 0, stream()>>>(in[0].ptr<float>(), out.ptr<float>(), log, outer, n, 1);
  else if ((inner >= 32 || outer * inner < kFewLines) && outer * tiles <= 2147483647)
    softmax_cols<<<static_cast<unsigned>(outer * tiles), kThreads, 0, stream()>>>(in[0].ptr<float>(), out.ptr<float>(),
                                                                                  log, n, inner, tiles);
  else  // many short lines: a thread a line keeps every lane busy
    softmax<false><<<blocks_for(outer * inner), kThreads, 0, stream()>>>(in[0].ptr<float>(), out.ptr<float>(), log,
                                                                         outer, n, inner);
  return launched("softmax");
}
static Status k_softmax(const TensorView* in, int nin, const TensorView& out, const double* at) {
  return launch_softmax(in, nin, out, at, false);
}
static Status k_log_softmax(const TensorView* in, int nin, const TensorView& out, const double* at) {
  return launch_softmax(in, nin, out, at, true);
}

struct CeArgs {
  const float* x;
  const int32_t* y;
  const float* g;
  const float* w;
  float* out;
  int64_t n, c;
  float s;
  DeviceFlags* flags;
};

// A warp per row, its lanes striding over the C classes; lane 0 writes the row's loss
__global__ void softmax_cross_entropy(CeArgs a, bool backward) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (r >= a.n) return;  // a whole warp leaves together
  const int32_t y = a.y[r];
  const float* x = a.x + r * a.c;
  if (y < 0 || y >= a.c) {
    if (lane == 0) report(a.flags, FLAG_LABEL, r, y, a.c);
    if (backward)
      for (int64_t k = lane; k < a.c; k += 32) a.out[r * a.c + k] = 0.f;
    else if (lane == 0)
      a.out[r] = 0.f;
    return;
  }
  // the row's log-softmax is (x - m) - ls (NaN if any logit is)
  const RowExp e = warp_row_exp(x, a.c, lane);
  const float m = e.m, ls = e.nan ? nanf("") : logf(e.s);
  auto wt = [&](int64_t k) { return a.w ? a.w[k] : 1.f; };
  if (!backward) {
    float acc = 0.f;
    if (a.s != 0.f) {
      for (int64_t k = lane; k < a.c; k += 32) acc += wt(k) * ((x[k] - m) - ls);
      acc = warp_sum_all(acc);
    }
    if (lane == 0) {
      float loss = -(1.f - a.s) * wt(y) * ((x[y] - m) - ls);
      if (a.s != 0.f) loss -= (a.s / a.c) * acc;
      a.out[r] = loss;
    }
    return;
  }
  float W = static_cast<float>(a.c);
  if (a.w) {
    float ws = 0.f;
    for (int64_t k = lane; k < a.c; k += 32) ws += a.w[k];
    W = warp_sum_all(ws);
  }
  const float g = a.g[r], hard = (1.f - a.s) * wt(y);
  for (int64_t k = lane; k < a.c; k += 32) {
    const float p = expf((x[k] - m) - ls);
    float v = g * (hard * p + (a.s / a.c) * (p * W - wt(k)));
    if (k == y) v -= g * hard;
    a.out[r * a.c + k] = v;
  }
}

static_assert(ATTR_SOFTMAX_CROSS_ENTROPY_BACKWARD_LABEL_SMOOTHING == ATTR_SOFTMAX_CROSS_ENTROPY_LABEL_SMOOTHING);

static Status ce(const TensorView* in, int nin, const TensorView& out, const double* at, bool backward) {
  const int want = backward ? 3 : 2;
  const char* name = backward ? "softmaxCrossEntropyBackward" : "softmaxCrossEntropy";
  KILN_REQUIRE(nin == want || nin == want + 1, ST_ARG, name, " takes ", want, " inputs and an optional weight, got ",
               nin);
  const TensorView &x = in[0], &y = in[1];
  KILN_REQUIRE(x.ndim == 2 && x.dtype == DT_FLOAT32 && x.contiguous(), ST_SHAPE, name,
               ": logits must be contiguous float32 [N, C]");
  const int64_t n = x.shape[0], c = x.shape[1];
  KILN_REQUIRE(y.ndim == 1 && y.shape[0] == n && y.dtype == DT_INT32 && y.contiguous(), ST_SHAPE, name,
               ": labels must be int32 [", n, "]");
  CeArgs a{x.ptr<float>(),
           y.ptr<int32_t>(),
           nullptr,
           nullptr,
           out.ptr<float>(),
           n,
           c,
           static_cast<float>(at[ATTR_SOFTMAX_CROSS_ENTROPY_LABEL_SMOOTHING]),
           device_flags()};
  if (backward) {
    KILN_REQUIRE(in[2].numel() == n && in[2].dtype == DT_FLOAT32 && in[2].contiguous(), ST_SHAPE, name,
                 ": the row gradient must have ", n, " values");
    KILN_REQUIRE(same_shape(out, x), ST_SHAPE, name, " writes [N, C]");
    a.g = in[2].ptr<float>();
  } else {
    KILN_REQUIRE(out.numel() == n, ST_SHAPE, name, " writes [N]");
  }
  if (nin == want + 1) {
    KILN_REQUIRE(in[want].numel() == c && in[want].dtype == DT_FLOAT32 && in[want].contiguous(), ST_SHAPE, name,
                 ": weight must be [", c, "]");
    a.w = in[want].ptr<float>();
  }
  if (n == 0) return Status::ok();
  softmax_cross_entropy<<<blocks_for(n * 32), kThreads, 0, stream()>>>(a, backward);
  return launched(name);
}
static Status k_softmax_cross_entropy(const TensorView* in, int nin, const TensorView& out, const double* at) {
  return ce(in, nin, out, at, false);
}
static Status k_softmax_cross_entropy_backward(const TensorView* in, int nin, const TensorView& out, const double* at) {
  return ce(in, nin, out, at, true);
}

// A block per column of x [N, F] (blockIdx.x = j), its threads striding over the rows: count, sum, min and max
// partials (double sums, as cpu) combined in a fixed-order tree, then the squared deviations from the mean.
__global__ void nan_column_stats(const float* x, float* o, int64_t n, int64_t f) {
  const int64_t j = blockIdx.x;
  const int t = threadIdx.x;
  __shared__ double s_cnt[kThreads], s_sum[kThreads];
  __shared__ float s_lo[kThreads], s_hi[kThreads];
  double cnt = 0, sum = 0;
  float lo = INFINITY, hi = -INFINITY;
  for (int64_t i = t; i < n; i += kThreads) {
    const float v = x[i * f + j];
    if (!isnan(v)) {
      cnt += 1;
      sum += v;
      lo = fminf(lo, v);
      hi = fmaxf(hi, v);
    }
  }
  s_cnt[t] = cnt;
  s_sum[t] = sum;
  s_lo[t] = lo;
  s_hi[t] = hi;
  __syncthreads();
  for (int h = kThreads / 2; h > 0; h >>= 1) {
    if (t < h) {
      s_cnt[t] += s_cnt[t + h];
      s_sum[t] += s_sum[t + h];
      s_lo[t] = fminf(s_lo[t], s_lo[t + h]);
      s_hi[t] = fmaxf(s_hi[t], s_hi[t + h]);
    }
    __syncthreads();
  }
  const double total = s_cnt[0], mean = s_sum[0] / total;
  double ss = 0;
  for (int64_t i = t; i < n; i += kThreads) {
    const float v = x[i * f + j];
    if (!isnan(v)) ss += (v - mean) * (v - mean);
  }
  __syncthreads();  // every thread has read s_sum[0]
  s_sum[t] = ss;
  __syncthreads();
  for (int h = kThreads / 2; h > 0; h >>= 1) {
    if (t < h) s_sum[t] += s_sum[t + h];
    __syncthreads();
  }
  if (t != 0) return;
  o[j] = static_cast<float>(total);
  o[f + j] = total ? static_cast<float>(mean) : nanf("");
  o[2 * f + j] = total ? static_cast<float>(s_sum[0] / total) : nanf("");
  o[3 * f + j] = total ? s_lo[0] : nanf("");
  o[4 * f + j] = total ? s_hi[0] : nanf("");
}

static Status k_nan_column_stats(const TensorView* in, int nin, const TensorView& out, const double*) {
  KILN_REQUIRE(nin == 1 && in[0].ndim == 2 && in[0].dtype == DT_FLOAT32 && in[0].contiguous(), ST_SHAPE,
               "nanColumnStats takes [N, F]");
  const int64_t n = in[0].shape[0], f = in[0].shape[1];
  KILN_REQUIRE(out.numel() == 5 * f, ST_SHAPE, "nanColumnStats writes [5, F]");
  KILN_REQUIRE(f <= 2147483647LL, ST_SHAPE, "nanColumnStats on cuda takes up to 2^31 - 1 columns, got ",
               shape_str(in[0]));
  if (f == 0) return Status::ok();
  nan_column_stats<<<static_cast<unsigned>(f), kThreads, 0, stream()>>>(in[0].ptr<float>(), out.ptr<float>(), n, f);
  return launched("nanColumnStats");
}

// A float's bits as an unsigned key in the float order (-0 just before +0); NaN never gets here.
__device__ inline uint32_t order_key(float v) {
  const uint32_t b = __float_as_uint(v);
  return (b & 0x80000000u) ? ~b : b | 0x80000000u;
}
__device__ inline float key_value(uint32_t k) { return __uint_as_float((k & 0x80000000u) ? k & 0x7fffffffu : ~k); }

// A block per column (blockIdx.x = j): the rank-k non-NaN value, k = floor(q * (len - 1)), is selected by its key
// 8 bits at a time (a 256-bin histogram of the values that share the bits chosen so far, then the bin holding
// rank k); the next order statistic is the same value while its run of equal keys lasts, else the least key
// above it. The column is read six times and never sorted; the interpolation is cpu's, in double.
__global__ void nan_quantile(const float* x, float* o, int64_t n, int64_t f, double q) {
  const int64_t j = blockIdx.x;
  const int t = threadIdx.x;
  __shared__ unsigned hist[256], pick[3], len_s, above;
  static_assert(kThreads == 256, "a thread per histogram bin");
  if (t == 0) {
    len_s = 0;
    above = 0xffffffffu;
  }
  __syncthreads();
  unsigned c = 0;
  for (int64_t i = t; i < n; i += kThreads) c += isnan(x[i * f + j]) ? 0u : 1u;
  atomicAdd(&len_s, c);
  __syncthreads();
  const unsigned len = len_s;
  if (len == 0) {  // the same for every thread
    if (t == 0) o[j] = nanf("");
    return;
  }
  const double pos = q * static_cast<double>(len - 1);
  const unsigned k = static_cast<unsigned>(pos);
  const double frac = pos - static_cast<double>(k);
  unsigned prefix = 0, rank = k, same = 0;  // key bits chosen so far; rank left among, and count of, the values
                                            // that share them
  for (int step = 0; step < 4; ++step) {
    const int shift = 24 - 8 * step;
    const unsigned fixed = ~(0xffffffffu >> (8 * step));
    hist[t] = 0;
    __syncthreads();
    for (int64_t i = t; i < n; i += kThreads) {
      const float v = x[i * f + j];
      if (isnan(v)) continue;
      const unsigned key = order_key(v);
      if ((key & fixed) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1u);
    }
    __syncthreads();
    if (t == 0) {
      unsigned r = rank, bin = 0;
      for (;; ++bin) {
        const unsigned m = hist[bin];
        if (r < m || bin == 255) {
          pick[1] = m;
          break;
        }
        r -= m;
      }
      pick[0] = bin;
      pick[2] = r;
    }
    __syncthreads();
    prefix |= pick[0] << shift;
    same = pick[1];
    rank = pick[2];
  }
  const bool next_above = frac != 0 && rank + 1 >= same;
  if (next_above) {
    unsigned m = 0xffffffffu;
    for (int64_t i = t; i < n; i += kThreads) {
      const float v = x[i * f + j];
      if (isnan(v)) continue;
      const unsigned key = order_key(v);
      if (key > prefix) m = min(m, key);
    }
    atomicMin(&above, m);
  }
  __syncthreads();
  if (t != 0) return;
  const float a = key_value(prefix);
  if (frac == 0) {
    o[j] = a;
    return;
  }
  const float b = next_above ? key_value(above) : a;
  o[j] = static_cast<float>(a + (static_cast<double>(b) - a) * frac);
}

static Status k_nan_quantile(const TensorView* in, int nin, const TensorView& out, const double* at) {
  KILN_REQUIRE(nin == 1 && in[0].ndim == 2 && in[0].dtype == DT_FLOAT32 && in[0].contiguous(), ST_SHAPE,
               "nanQuantile takes [N, F]");
  const double q = at[ATTR_NAN_QUANTILE_Q];
  KILN_REQUIRE(q >= 0 && q <= 1, ST_ARG, "nanQuantile: q must be in [0, 1], got ", q);
  const int64_t n = in[0].shape[0], f = in[0].shape[1];
  KILN_REQUIRE(out.numel() == f, ST_SHAPE, "nanQuantile writes [F]");
  KILN_REQUIRE(n <= 0xffffffffLL && f <= 2147483647LL, ST_SHAPE, "nanQuantile on cuda takes up to 2^32 - 1 rows and ",
               "2^31 - 1 columns, got ", shape_str(in[0]));
  if (f == 0) return Status::ok();
  nan_quantile<<<static_cast<unsigned>(f), kThreads, 0, stream()>>>(in[0].ptr<float>(), out.ptr<float>(), n, f, q);
  return launched("nanQuantile");
}

__global__ void row_hash(const uint32_t* x, int32_t* o, int64_t n, int64_t f) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  uint32_t h1 = 0x811c9dc5u ^ static_cast<uint32_t>(f), h2 = 0x9e3779b9u;
  for (int64_t k = i * f; k < (i + 1) * f; ++k) {
    uint32_t v = x[k];
    if ((v & 0x7f800000u) == 0x7f800000u && (v & 0x7fffffu) != 0) v = 0x7fc00000u;
    h1 = (h1 ^ v) * 0x01000193u;
    h2 = (h2 ^ v) * 0x5bd1e995u;
    h2 ^= h2 >> 13;
  }
  o[2 * i] = static_cast<int32_t>(h1);
  o[2 * i + 1] = static_cast<int32_t>(h2);
}

static Status k_row_hash(const TensorView* in, int nin, const TensorView& out, const double*) {
  KILN_REQUIRE(nin == 1 && in[0].ndim == 2 && in[0].dtype == DT_FLOAT32 && in[0].contiguous(), ST_SHAPE,
               "rowHash takes [N, F]");
  const int64_t n = in[0].shape[0], f = in[0].shape[1];
  KILN_REQUIRE(out.numel() == 2 * n && out.dtype == DT_INT32, ST_SHAPE, "rowHash writes int32 [N, 2]");
  if (n == 0) return Status::ok();
  row_hash<<<blocks_for(n), kThreads, 0, stream()>>>(in[0].ptr<uint32_t>(), out.ptr<int32_t>(), n, f);
  return launched("rowHash");
}

// ---- fused layer normalisation: a warp per row (two-pass statistics with warp sums), and for the backward
// a thread per column for dweight/dbias after the row pass left each row's mean and 1/std in scratch.
constexpr int kLnWarps = 4;

__device__ inline float2 ln_row_stats(const float* x, int64_t C, float eps) {
  float s = 0.f;
  for (int64_t c = threadIdx.x & 31; c < C; c += 32) s += x[c];
  const float mu = warp_sum_all(s) / static_cast<float>(C);
  float v = 0.f;
  for (int64_t c = threadIdx.x & 31; c < C; c += 32) v += (x[c] - mu) * (x[c] - mu);
  return make_float2(mu, rsqrtf(warp_sum_all(v) / static_cast<float>(C) + eps));
}

__global__ void layer_norm(LnArgs a, float* y) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kLnWarps + (threadIdx.x >> 5);
  if (r >= a.R) return;
  const float* x = a.x + r * a.C;
  const float2 st = ln_row_stats(x, a.C, a.eps);
  for (int64_t c = threadIdx.x & 31; c < a.C; c += 32) {
    const float h = (x[c] - st.x) * st.y;
    y[r * a.C + c] = a.a ? h * a.a[c] + a.b[c] : h;
  }
}

__global__ void layer_norm_backward(LnArgs a, float* dx, float* stats) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kLnWarps + (threadIdx.x >> 5);
  if (r >= a.R) return;
  const float* x = a.x + r * a.C;
  const float* gy = a.a + r * a.C;
  const float2 st = ln_row_stats(x, a.C, a.eps);
  float m1 = 0.f, m2 = 0.f;
  for (int64_t c = threadIdx.x & 31; c < a.C; c += 32) {
    const float dxh = a.b ? gy[c] * a.b[c] : gy[c];
    m1 += dxh;
    m2 += dxh * (x[c] - st.x) * st.y;
  }
  m1 = warp_sum_all(m1) / static_cast<float>(a.C);
  m2 = warp_sum_all(m2) / static_cast<float>(a.C);
  for (int64_t c = threadIdx.x & 31; c < a.C; c += 32) {
    const float dxh = a.b ? gy[c] * a.b[c] : gy[c];
    dx[r * a.C + c] = st.y * (dxh - m1 - (x[c] - st.x) * st.y * m2);
  }
  if ((threadIdx.x & 31) == 0) {
    stats[2 * r] = st.x;
    stats[2 * r + 1] = st.y;
  }
}

// dweight and dbias over rows [y * chunk, (y + 1) * chunk) of the grid's row y: out[y * 2C + c] and
// out[y * 2C + C + c] (one chunk: out is dweight then dbias; more: partial sums that sum_splits adds in order)
__global__ void layer_norm_backward_params(LnArgs a, const float* stats, float* out, int64_t chunk) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= a.C) return;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * chunk, r1 = r0 + chunk < a.R ? r0 + chunk : a.R;
  float sw = 0.f, sb = 0.f;
  for (int64_t r = r0; r < r1; ++r) {
    const float gy = a.a[r * a.C + c];
    sw += gy * (a.x[r * a.C + c] - stats[2 * r]) * stats[2 * r + 1];
    sb += gy;
  }
  out += static_cast<int64_t>(blockIdx.y) * 2 * a.C;
  out[c] = sw;
  out[a.C + c] = sb;
}

// layerNormBackward's chunks of rows for dweight and dbias, as reduce_cols cuts columns: kColChunk rows a chunk
// (more if 65535 chunks would not cover R) when C alone gives fewer than kFewOutputs threads; sets *chunk
static int64_t ln_param_chunks(int64_t R, int64_t C, int64_t* chunk) {
  *chunk = R > 0 ? R : 1;
  if (C >= kFewOutputs || R <= kColChunk) return 1;
  *chunk = kColChunk > (R + 65534) / 65535 ? kColChunk : (R + 65534) / 65535;
  return (R + *chunk - 1) / *chunk;
}

static unsigned ln_blocks(int64_t rows) {
  const int64_t b = (rows + kLnWarps - 1) / kLnWarps;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 2147483647 ? 2147483647 : b));
}

static Status k_layer_norm(const TensorView* in, int nin, const TensorView& out, const double* attrs) {
  LnArgs a;
  if (Status st = ln_check(in, nin, true, attrs, a); !st.good()) return st;
  KILN_REQUIRE(out.dtype == DT_FLOAT32 && out.numel() == a.R * a.C, ST_SHAPE, "layerNorm writes [", a.R, ", ", a.C,
               "]");
  KILN_REQUIRE((a.R + kLnWarps - 1) / kLnWarps <= 2147483647, ST_SHAPE, "layerNorm: too many rows for one grid");
  if (a.R * a.C == 0) return Status::ok();
  layer_norm<<<ln_blocks(a.R), 32 * kLnWarps, 0, stream()>>>(a, out.ptr<float>());
  return launched("layerNorm");
}

static Status k_layer_norm_backward(const TensorView* in, int nin, const TensorView& out, const double* attrs) {
  LnArgs a;
  if (Status st = ln_check(in, nin, false, attrs, a); !st.good()) return st;
  KILN_REQUIRE(out.dtype == DT_FLOAT32 && out.numel() == a.R * a.C + 2 * a.C, ST_SHAPE, "layerNormBackward writes ",
               a.R * a.C + 2 * a.C, " values (dx, dweight, dbias)");
  KILN_REQUIRE((a.R + kLnWarps - 1) / kLnWarps <= 2147483647, ST_SHAPE,
               "layerNormBackward: too many rows for one grid");
  if (a.C == 0) return Status::ok();
  int64_t chunk = 0;
  const int64_t chunks = ln_param_chunks(a.R, a.C, &chunk);
  // the rows' statistics, then (several chunks) the chunks' partial dweight and dbias
  const int64_t words = (a.R > 0 ? 2 * a.R : 2) + (chunks > 1 ? chunks * 2 * a.C : 0);
  const uint64_t bytes = static_cast<uint64_t>(words) * sizeof(float);
  void* stats = nullptr;
  if (Status st = scratch(bytes, &stats); !st.good()) return st;
  float* o = out.ptr<float>();
  float* s = static_cast<float*>(stats);
  float* part = s + (a.R > 0 ? 2 * a.R : 2);
  if (a.R > 0) layer_norm_backward<<<ln_blocks(a.R), 32 * kLnWarps, 0, stream()>>>(a, o, s);
  layer_norm_backward_params<<<dim3(blocks_for(a.C), static_cast<unsigned>(chunks)), kThreads, 0, stream()>>>(
      a, s, chunks > 1 ? part : o + a.R * a.C, chunk);
  if (chunks > 1)
    sum_splits<<<blocks_for(2 * a.C), kThreads, 0, stream()>>>(part, o + a.R * a.C, 2 * a.C,
                                                               static_cast<int32_t>(chunks));
  const Status st = launched("layerNormBackward");
  release_scratch(stats, bytes);
  return st;
}

void register_reduce(KernelTable& t) {
  t.fn[OP_SUM] = k_sum;
  t.fn[OP_MAX] = k_max;
  t.fn[OP_MIN] = k_min;
  t.fn[OP_ARGMAX] = k_argmax;
  t.fn[OP_ARGMIN] = k_argmin;
  t.fn[OP_SOFTMAX] = k_softmax;
  t.fn[OP_LAYER_NORM] = k_layer_norm;
  t.fn[OP_LAYER_NORM_BACKWARD] = k_layer_norm_backward;
  t.fn[OP_LOG_SOFTMAX] = k_log_softmax;
  t.fn[OP_SOFTMAX_CROSS_ENTROPY] = k_softmax_cross_entropy;
  t.fn[OP_SOFTMAX_CROSS_ENTROPY_BACKWARD] = k_softmax_cross_entropy_backward;
  t.fn[OP_NAN_COLUMN_STATS] = k_nan_column_stats;
  t.fn[OP_NAN_QUANTILE] = k_nan_quantile;
  t.fn[OP_ROW_HASH] = k_row_hash;
}

}  // namespace cuda
}  // namespace kiln
