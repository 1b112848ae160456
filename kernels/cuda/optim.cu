// Optimizer family on CUDA: fused Adam/AMSGrad/AdamW and SGD (momentum, Nesterov) steps, one pass per parameter,
// in place (the addon has checked the updated inputs are contiguous float32 and share no buffer).
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

__global__ void adam_step(AdamArgs a) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= a.n) return;
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

struct SgdArgs {
  float* p;
  const float* g;
  float* b;
  int64_t n;
  float lr, mom, damp, wd;
  bool nesterov, first;
};

__global__ void sgd_step(SgdArgs a) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= a.n) return;
  const float p = a.p[i], g = a.g[i] + a.wd * p;
  if (!a.b) {
    a.p[i] = p - a.lr * g;
    return;
  }
  const float b = a.first ? g : a.mom * a.b[i] + (1.f - a.damp) * g;
  a.b[i] = b;
  a.p[i] = p - a.lr * (a.nesterov ? g + a.mom * b : b);
}

// Inputs [first, first + count) are contiguous float32 of the parameter's (input first's) shape.
static Status same_params(const TensorView* in, int first, int count, const char* name) {
  for (int k = first; k < first + count; ++k)
    KILN_REQUIRE(in[k].dtype == DT_FLOAT32 && in[k].contiguous() && same_shape(in[k], in[first]), ST_SHAPE, name,
                 ": input ", k, " is ", shape_str(in[k]), " but the parameter is ", shape_str(in[first]),
                 " (all contiguous float32)");
  return Status::ok();
}

static Status adam_check(const double* at, const char* name) {
  KILN_REQUIRE(at[ATTR_ADAM_STEP_BIAS1] > 0 && at[ATTR_ADAM_STEP_BIAS1] <= 1 && at[ATTR_ADAM_STEP_BIAS2] > 0 &&
                   at[ATTR_ADAM_STEP_BIAS2] <= 1,
               ST_ARG, name, ": bias corrections must be in (0, 1], got ", at[ATTR_ADAM_STEP_BIAS1], " and ",
               at[ATTR_ADAM_STEP_BIAS2]);
  return Status::ok();
}

// One parameter's update: in = param, grad, m, v[, vmax] (checked by the caller).
static void adam_launch(const TensorView* in, bool ams, const double* at) {
  const float lr = static_cast<float>(at[ATTR_ADAM_STEP_LR]), b1 = static_cast<float>(at[ATTR_ADAM_STEP_BETA1]),
              b2 = static_cast<float>(at[ATTR_ADAM_STEP_BETA2]);
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
             1.0f - b1,
             1.0f - b2,
             decoupled ? 0.0f : wd,
             decoupled ? 1.0f - lr * wd : 1.0f,
             static_cast<float>(at[ATTR_ADAM_STEP_LR] / at[ATTR_ADAM_STEP_BIAS1]),
             static_cast<float>(1.0 / std::sqrt(at[ATTR_ADAM_STEP_BIAS2])),
             static_cast<float>(at[ATTR_ADAM_STEP_EPS])};
  if (a.n > 0) adam_step<<<blocks_for(a.n), kThreads, 0, stream()>>>(a);
}

static Status k_adam_step(const TensorView* in, int nin, const TensorView&, const double* at) {
  KILN_REQUIRE(nin == 4 || nin == 5, ST_ARG, "adamStep takes 4 or 5 inputs, got ", nin);
  if (Status s = same_params(in, 0, nin, "adamStep"); !s.good()) return s;
  if (Status s = adam_check(at, "adamStep"); !s.good()) return s;
  adam_launch(in, nin == 5, at);
  return launched("adamStep");
}

// Up to 8 parameters with one step count: one launch each on the work stream (no host sync between them).
static Status k_adam_step_multi(const TensorView* in, int nin, const TensorView&, const double* at) {
  KILN_REQUIRE(nin >= 4 && nin <= 32 && nin % 4 == 0, ST_ARG,
               "adamStepMulti takes 1 to 8 groups of (param, grad, m, v), got ", nin, " inputs");
  for (int q = 0; q < nin; q += 4)
    if (Status s = same_params(in, q, 4, "adamStepMulti"); !s.good()) return s;
  if (Status s = adam_check(at, "adamStepMulti"); !s.good()) return s;
  for (int q = 0; q < nin; q += 4) adam_launch(in + q, false, at);
  return launched("adamStepMulti");
}

// one parameter's SGD launch (inputs param, grad[, buffer] checked by the caller)
static void sgd_launch(const TensorView* in, bool has_buffer, const double* at) {
  SgdArgs a{in[0].ptr<float>(),
            in[1].ptr<float>(),
            has_buffer ? in[2].ptr<float>() : nullptr,
            in[0].numel(),
            static_cast<float>(at[ATTR_SGD_STEP_LR]),
            static_cast<float>(at[ATTR_SGD_STEP_MOMENTUM]),
            static_cast<float>(at[ATTR_SGD_STEP_DAMPENING]),
            static_cast<float>(at[ATTR_SGD_STEP_WEIGHT_DECAY]),
            at[ATTR_SGD_STEP_NESTEROV] != 0,
            at[ATTR_SGD_STEP_FIRST_STEP] != 0};
  if (a.n > 0) sgd_step<<<blocks_for(a.n), kThreads, 0, stream()>>>(a);
}

static Status k_sgd_step(const TensorView* in, int nin, const TensorView&, const double* at) {
  KILN_REQUIRE(nin == 2 || nin == 3, ST_ARG, "sgdStep takes 2 or 3 inputs, got ", nin);
  if (Status s = same_params(in, 0, nin, "sgdStep"); !s.good()) return s;
  KILN_REQUIRE(!(at[ATTR_SGD_STEP_NESTEROV] != 0 && nin < 3), ST_ARG, "sgdStep: nesterov needs a momentum buffer");
  sgd_launch(in, nin == 3, at);
  return launched("sgdStep");
}

// Up to 8 parameters with momentum buffers: one launch each on the work stream, as adamStepMulti
static Status k_sgd_step_multi(const TensorView* in, int nin, const TensorView&, const double* at) {
  KILN_REQUIRE(nin >= 3 && nin <= 24 && nin % 3 == 0, ST_ARG,
               "sgdStepMulti takes 1 to 8 groups of (param, grad, momentum buffer), got ", nin, " inputs");
  for (int q = 0; q < nin; q += 3)
    if (Status s = same_params(in, q, 3, "sgdStepMulti"); !s.good()) return s;
  for (int q = 0; q < nin; q += 3) sgd_launch(in + q, true, at);
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
