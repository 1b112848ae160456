// Fused optimizer updates: one pass over a parameter reads its gradient and state and writes the parameter and
// state back in place (the addon has already checked that in-place inputs are contiguous float32 buffers that no
// other input shares). The loops are plain float code over restrict pointers, which GCC vectorizes for each ISA
// pass (sqrt included, as the build uses -fno-math-errno).
#ifndef KILN_ISA
#include "kiln/cpu_common.h"
#define KILN_ISA_FILE "cpu/optim.cc"
#include "kiln/isa_passes.h"
#else

namespace optim {

constexpr int64_t kGrain = 1 << 14;

static Status check_same(const TensorView* in, int nin, const char* op) {
  for (int i = 0; i < nin; ++i) {
    KILN_REQUIRE(in[i].dtype == DT_FLOAT32, ST_DTYPE, op, ": input ", i, " must be float32");
    KILN_REQUIRE(in[i].contiguous(), ST_ARG, op, ": input ", i, " must be contiguous");
    KILN_REQUIRE(same_shape(in[i], in[0]), ST_SHAPE, op, ": input ", i, " has shape ", shape_str(in[i]),
                 " but the parameter has shape ", shape_str(in[0]));
  }
  return Status::ok();
}

// One contiguous range. The pointers arrive as restrict parameters (not captured through a closure, whose
// loads GCC cannot hoist past the stores), so the loop vectorizes.
template <bool Ams>
static void adam_range(float* __restrict p, const float* __restrict g, float* __restrict m, float* __restrict v,
                       float* __restrict vmax, int64_t n, float b1, float b2, float c1, float c2, float l2,
                       float shrink, float step, float inv_sqrt_bias2, float eps) {
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i] + l2 * p[i];
    const float mi = b1 * m[i] + c1 * gi;
    const float vi = b2 * v[i] + c2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    float vd = vi;
    if (Ams) {
      vd = vmax[i] > vi ? vmax[i] : vi;
      vmax[i] = vd;
    }
    p[i] = p[i] * shrink - step * mi / (__builtin_sqrtf(vd) * inv_sqrt_bias2 + eps);
  }
}

static void sgd_range(float* __restrict p, const float* __restrict g, float* __restrict buf, int64_t n, float lr,
                      float mom, float damp, float wd, bool nesterov, bool first) {
  if (!buf) {
    for (int64_t i = 0; i < n; ++i) p[i] -= lr * (g[i] + wd * p[i]);
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i] + wd * p[i];
    const float b = first ? gi : mom * buf[i] + damp * gi;
    buf[i] = b;
    p[i] -= lr * (nesterov ? gi + mom * b : b);
  }
}

// attrs: lr, beta1, beta2, eps, weightDecay, decoupled, bias1 (1 - beta1^t), bias2 (1 - beta2^t)
static Status k_adam_step(const TensorView* in, int nin, const TensorView&, const double* a) {
  KILN_REQUIRE(nin == 4 || nin == 5, ST_ARG, "adamStep takes param, grad, m, v and optionally vmax, got ", nin,
               " inputs");
  const Status s = check_same(in, nin, "adamStep");
  if (!s.good()) return s;
  KILN_REQUIRE(a[ATTR_ADAM_STEP_BIAS1] > 0 && a[ATTR_ADAM_STEP_BIAS1] <= 1 && a[ATTR_ADAM_STEP_BIAS2] > 0 &&
                   a[ATTR_ADAM_STEP_BIAS2] <= 1,
               ST_ARG, "adamStep: bias corrections must be in (0, 1], got ", a[ATTR_ADAM_STEP_BIAS1], " and ",
               a[ATTR_ADAM_STEP_BIAS2]);
  float* __restrict p = in[0].ptr<float>();
  const float* __restrict g = in[1].ptr<float>();
  float* __restrict m = in[2].ptr<float>();
  float* __restrict v = in[3].ptr<float>();
  float* __restrict vmax = nin == 5 ? in[4].ptr<float>() : nullptr;
  const float lr = static_cast<float>(a[ATTR_ADAM_STEP_LR]), b1 = static_cast<float>(a[ATTR_ADAM_STEP_BETA1]),
              b2 = static_cast<float>(a[ATTR_ADAM_STEP_BETA2]);
  const float eps = static_cast<float>(a[ATTR_ADAM_STEP_EPS]), wd = static_cast<float>(a[ATTR_ADAM_STEP_WEIGHT_DECAY]);
  const bool decoupled = a[ATTR_ADAM_STEP_DECOUPLED] != 0;
  const float step = static_cast<float>(a[ATTR_ADAM_STEP_LR] / a[ATTR_ADAM_STEP_BIAS1]);  // lr / (1 - beta1^t)
  const float inv_sqrt_bias2 = static_cast<float>(1.0 / std::sqrt(a[ATTR_ADAM_STEP_BIAS2]));
  const float c1 = 1.0f - b1, c2 = 1.0f - b2;
  const float shrink = decoupled ? 1.0f - lr * wd : 1.0f;
  const float l2 = decoupled ? 0.0f : wd;
  parallel_for(in[0].numel(), kGrain, [=](int64_t lo, int64_t hi) {
    if (vmax)
      adam_range<true>(p + lo, g + lo, m + lo, v + lo, vmax + lo, hi - lo, b1, b2, c1, c2, l2, shrink, step,
                       inv_sqrt_bias2, eps);
    else
      adam_range<false>(p + lo, g + lo, m + lo, v + lo, nullptr, hi - lo, b1, b2, c1, c2, l2, shrink, step,
                        inv_sqrt_bias2, eps);
  });
  return Status::ok();
}

// attrs: lr, momentum, dampening, weightDecay, nesterov, firstStep
static Status k_sgd_step(const TensorView* in, int nin, const TensorView&, const double* a) {
  KILN_REQUIRE(nin == 2 || nin == 3, ST_ARG, "sgdStep takes param, grad and optionally a momentum buffer, got ", nin,
               " inputs");
  const Status s = check_same(in, nin, "sgdStep");
  if (!s.good()) return s;
  float* __restrict p = in[0].ptr<float>();
  const float* __restrict g = in[1].ptr<float>();
  float* __restrict buf = nin == 3 ? in[2].ptr<float>() : nullptr;
  const float lr = static_cast<float>(a[ATTR_SGD_STEP_LR]), mom = static_cast<float>(a[ATTR_SGD_STEP_MOMENTUM]),
              damp = 1.0f - static_cast<float>(a[ATTR_SGD_STEP_DAMPENING]);
  const float wd = static_cast<float>(a[ATTR_SGD_STEP_WEIGHT_DECAY]);
  const bool nesterov = a[ATTR_SGD_STEP_NESTEROV] != 0, first = a[ATTR_SGD_STEP_FIRST_STEP] != 0;
  KILN_REQUIRE(!(nesterov && !buf), ST_ARG, "sgdStep: nesterov needs a momentum buffer");
  parallel_for(in[0].numel(), kGrain, [=](int64_t lo, int64_t hi) {
    sgd_range(p + lo, g + lo, buf ? buf + lo : nullptr, hi - lo, lr, mom, damp, wd, nesterov, first);
  });
  return Status::ok();
}

}  // namespace optim

void register_optim(KernelTable& t) {
  t.fn[OP_ADAM_STEP] = optim::k_adam_step;
  t.fn[OP_SGD_STEP] = optim::k_sgd_step;
}

#endif
