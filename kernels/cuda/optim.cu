// Optimizer family on CUDA: fused Adam/AMSGrad/AdamW and SGD (momentum, Nesterov) steps, in place (the addon has
// checked the updated inputs are contiguous float32 and share no buffer). The Multi ops update up to 8 parameters
// in one launch: each block belongs to one parameter, found from the blocks' running count.
#include <cmath>

#include "common.cuh"

namespace kiln {
namespace cuda {

struct AdamArgs {
  float* p;
  const float* g;
  float* m;
  float* v;
  float* vmax;
  int64_t n;
  // the same float operands as cpu (native/cpu/optim.cc), computed on the host in double exactly as there
  float b1, b2, c1, c2, l2, shrink, step, inv_sqrt_bias2, eps;
};

// element i of one parameter's update
__device__ inline void adam_elem(const AdamArgs& a, int64_t i) {
  // cpu's expression, term for term (only FMA contraction choices may differ by an ulp)
  const float gi = a.g[i] + a.l2 * a.p[i];
  const float mi = a.b1 * a.m[i] + a.c1 * gi;
  const float vi = a.b2 * a.v[i] + a.c2 * gi * gi;
  a.m[i] = mi;
  a.v[i] = vi;
  float vd = vi;
  if (a.vmax) {
    vd = a.vmax[i] > vi ? a.vmax[i] : vi;  // keeps a NaN v, as cpu does (fmaxf would drop it)
    a.vmax[i] = vd;
  }
  a.p[i] = a.p[i] * a.shrink - a.step * mi / (sqrtf(vd) * a.inv_sqrt_bias2 + a.eps);
}

__global__ void adam_step(AdamArgs a) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < a.n) adam_elem(a, i);
}

struct SgdArgs {
  float* p;
  const float* g;
  float* b;
  int64_t n;
  float lr, mom, keep, wd;  // keep: 1 - dampening, from double as cpu
  bool nesterov, first;
};

__device__ inline void sgd_elem(const SgdArgs& a, int64_t i) {
  const float p = a.p[i], g = a.g[i] + a.wd * p;
  if (!a.b) {
    a.p[i] = p - a.lr * g;
    return;
  }
  const float b = a.first ? g : a.mom * a.b[i] + a.keep * g;
  a.b[i] = b;
  a.p[i] = p - a.lr * (a.nesterov ? g + a.mom * b : b);
}

__global__ void sgd_step(SgdArgs a) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < a.n) sgd_elem(a, i);
}

constexpr int kMultiMax = 8;

// The parameter of block b in a multi-tensor launch, and the block's first element in it: parameter k owns blocks
// [block_end[k - 1], block_end[k]) (kThreads elements each), so every thread of a block takes the same branch.
__device__ inline int multi_part(const int64_t* block_end, int count, int64_t b, int64_t* first) {
  int k = 0;
  while (k < count - 1 && b >= block_end[k]) ++k;
  *first = (b - (k > 0 ? block_end[k - 1] : 0)) * kThreads;
  return k;
}

// up to kMultiMax parameters' operands, and where each one's blocks end
template <class Args>
struct MultiArgs {
  Args t[kMultiMax];
  int64_t block_end[kMultiMax];
  int count;
};

// several parameters' updates in one grid: Elem(t[k], i) for each element i of each parameter k
template <class Args, void (*Elem)(const Args&, int64_t)>
__global__ void step_multi(MultiArgs<Args> a) {
  int64_t first;
  const int k = multi_part(a.block_end, a.count, blockIdx.x, &first);
  const int64_t i = first + threadIdx.x;
  if (i < a.t[k].n) Elem(a.t[k], i);
}

static Status adam_check(const double* at, const char* name) {
  KILN_REQUIRE(at[ATTR_ADAM_STEP_BIAS1] > 0 && at[ATTR_ADAM_STEP_BIAS1] <= 1 && at[ATTR_ADAM_STEP_BIAS2] > 0 &&
                   at[ATTR_ADAM_STEP_BIAS2] <= 1,
               ST_ARG, name, ": bias corrections must be in (0, 1], got ", at[ATTR_ADAM_STEP_BIAS1], " and ",
               at[ATTR_ADAM_STEP_BIAS2]);
  return Status::ok();
}

// One parameter's operands: in = param, grad, m, v[, vmax] (checked by the caller).
static AdamArgs adam_args(const TensorView* in, bool ams, const double* at) {
  const float b1 = static_cast<float>(at[ATTR_ADAM_STEP_BETA1]), b2 = static_cast<float>(at[ATTR_ADAM_STEP_BETA2]);
  const float wd = static_cast<float>(at[ATTR_ADAM_STEP_WEIGHT_DECAY]);
  const bool decoupled = at[ATTR_ADAM_STEP_DECOUPLED] != 0;
  AdamArgs a{in[0].ptr<float>(),
             in[1].ptr<float>(),
             in[2].ptr<float>(),
             in[3].ptr<float>(),
             ams ? in[4].ptr<float>() : nullptr,
             in[0].numel(),
             b1,
             b2,
             static_cast<float>(1.0 - at[ATTR_ADAM_STEP_BETA1]),
             static_cast<float>(1.0 - at[ATTR_ADAM_STEP_BETA2]),
             decoupled ? 0.0f : wd,
             decoupled ? static_cast<float>(1.0 - at[ATTR_ADAM_STEP_LR] * at[ATTR_ADAM_STEP_WEIGHT_DECAY]) : 1.0f,
             static_cast<float>(at[ATTR_ADAM_STEP_LR] / at[ATTR_ADAM_STEP_BIAS1]),
             static_cast<float>(1.0 / std::sqrt(at[ATTR_ADAM_STEP_BIAS2])),
             static_cast<float>(at[ATTR_ADAM_STEP_EPS])};
  return a;
}

// A multi-tensor launch's block counts (m.t and m.count set); returns the total, the grid's size
template <class Args>
static int64_t multi_blocks(MultiArgs<Args>& m) {
  int64_t total = 0;
  for (int k = 0; k < m.count; ++k) m.block_end[k] = total += (m.t[k].n + kThreads - 1) / kThreads;
  return total;
}

// Launches a filled multi-tensor update in one grid, or one grid per parameter if the blocks would not fit one
template <class Args, void (*Elem)(const Args&, int64_t)>
static void multi_launch(MultiArgs<Args>& m, void (*one)(Args)) {
  const int64_t total = multi_blocks(m);
  if (total <= 2147483647) {
    if (total > 0) step_multi<Args, Elem><<<static_cast<unsigned>(total), kThreads, 0, stream()>>>(m);
    return;
  }
  for (int k = 0; k < m.count; ++k)
    if (m.t[k].n > 0) one<<<blocks_for(m.t[k].n), kThreads, 0, stream()>>>(m.t[k]);
}

static Status k_adam_step(const TensorView* in, int nin, const TensorView&, const double* at) {
  KILN_REQUIRE(nin == 4 || nin == 5, ST_ARG, "adamStep takes 4 or 5 inputs, got ", nin);
  if (Status s = check_same_params(in, 0, nin, "adamStep"); !s.good()) return s;
  if (Status s = adam_check(at, "adamStep"); !s.good()) return s;
  const AdamArgs a = adam_args(in, nin == 5, at);
  if (a.n > 0) adam_step<<<blocks_for(a.n), kThreads, 0, stream()>>>(a);
  return launched("adamStep");
}

// Up to 8 parameters with one step count, in one launch
static Status k_adam_step_multi(const TensorView* in, int nin, const TensorView&, const double* at) {
  KILN_REQUIRE(nin >= 4 && nin <= 32 && nin % 4 == 0, ST_ARG,
               "adamStepMulti takes 1 to 8 groups of (param, grad, m, v), got ", nin, " inputs");
  for (int q = 0; q < nin; q += 4)
    if (Status s = check_same_params(in, q, 4, "adamStepMulti"); !s.good()) return s;
  if (Status s = adam_check(at, "adamStepMulti"); !s.good()) return s;
  MultiArgs<AdamArgs> m{};
  m.count = nin / 4;
  for (int k = 0; k < m.count; ++k) m.t[k] = adam_args(in + 4 * k, false, at);
  multi_launch<AdamArgs, adam_elem>(m, adam_step);
  return launched("adamStepMulti");
}

// one parameter's SGD operands (inputs param, grad[, buffer] checked by the caller)
static SgdArgs sgd_args(const TensorView* in, bool has_buffer, const double* at) {
  return SgdArgs{in[0].ptr<float>(),
                 in[1].ptr<float>(),
                 has_buffer ? in[2].ptr<float>() : nullptr,
                 in[0].numel(),
                 static_cast<float>(at[ATTR_SGD_STEP_LR]),
                 static_cast<float>(at[ATTR_SGD_STEP_MOMENTUM]),
                 static_cast<float>(1.0 - at[ATTR_SGD_STEP_DAMPENING]),
                 static_cast<float>(at[ATTR_SGD_STEP_WEIGHT_DECAY]),
                 at[ATTR_SGD_STEP_NESTEROV] != 0,
                 at[ATTR_SGD_STEP_FIRST_STEP] != 0};
}

static Status k_sgd_step(const TensorView* in, int nin, const TensorView&, const double* at) {
  KILN_REQUIRE(nin == 2 || nin == 3, ST_ARG, "sgdStep takes 2 or 3 inputs, got ", nin);
  if (Status s = check_same_params(in, 0, nin, "sgdStep"); !s.good()) return s;
  KILN_REQUIRE(!(at[ATTR_SGD_STEP_NESTEROV] != 0 && nin < 3), ST_ARG, "sgdStep: nesterov needs a momentum buffer");
  const SgdArgs a = sgd_args(in, nin == 3, at);
  if (a.n > 0) sgd_step<<<blocks_for(a.n), kThreads, 0, stream()>>>(a);
  return launched("sgdStep");
}

// Up to 8 parameters with momentum buffers, in one launch as adamStepMulti
static Status k_sgd_step_multi(const TensorView* in, int nin, const TensorView&, const double* at) {
  KILN_REQUIRE(nin >= 3 && nin <= 24 && nin % 3 == 0, ST_ARG,
               "sgdStepMulti takes 1 to 8 groups of (param, grad, momentum buffer), got ", nin, " inputs");
  for (int q = 0; q < nin; q += 3)
    if (Status s = check_same_params(in, q, 3, "sgdStepMulti"); !s.good()) return s;
  MultiArgs<SgdArgs> m{};
  m.count = nin / 3;
  for (int k = 0; k < m.count; ++k) m.t[k] = sgd_args(in + 3 * k, true, at);
  multi_launch<SgdArgs, sgd_elem>(m, sgd_step);
  return launched("sgdStepMulti");
}

void register_optim(KernelTable& t) {
  t.fn[OP_ADAM_STEP] = k_adam_step;
  t.fn[OP_ADAM_STEP_MULTI] = k_adam_step_multi;
  t.fn[OP_SGD_STEP] = k_sgd_step;
  t.fn[OP_SGD_STEP_MULTI] = k_sgd_step_multi;
}

}  // namespace cuda
}  // namespace kiln
