// Fused optimizer updates: one pass over a parameter reads its gradient and state and writes the parameter and
// state back in place (the addon has already checked that in-place inputs are contiguous float32 buffers that no
// other input shares). The loops are plain float code over restrict pointers, which GCC vectorizes for each ISA
// pass (sqrt included, as the build uses -fno-math-errno).
#ifndef KILN_ISA
#include <algorithm>

#include "kiln/cpu_common.h"
#define KILN_ISA_FILE "cpu/optim.cc"
#include "kiln/isa_passes.h"
#else

namespace optim {

constexpr int64_t kGrain = 1 << 14;

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
                      float mom, float keep, float wd, bool nesterov, bool first) {
  if (!buf) {
    for (int64_t i = 0; i < n; ++i) p[i] -= lr * (g[i] + wd * p[i]);
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i] + wd * p[i];
    const float b = first ? gi : mom * buf[i] + keep * gi;
    buf[i] = b;
    p[i] -= lr * (nesterov ? gi + mom * b : b);
  }
}

// The float32 constants of one Adam step from the attributes (adamStep and adamStepMulti share the layout):
// lr, beta1, beta2, eps, weightDecay, decoupled, bias1 (1 - beta1^t), bias2 (1 - beta2^t).
struct AdamK {
  float b1, b2, c1, c2, l2, shrink, step, inv_sqrt_bias2, eps;
};
static Status adam_constants(const double* a, const char* op, AdamK& k) {
  KILN_REQUIRE(a[ATTR_ADAM_STEP_BIAS1] > 0 && a[ATTR_ADAM_STEP_BIAS1] <= 1 && a[ATTR_ADAM_STEP_BIAS2] > 0 &&
                   a[ATTR_ADAM_STEP_BIAS2] <= 1,
               ST_ARG, op, ": bias corrections must be in (0, 1], got ", a[ATTR_ADAM_STEP_BIAS1], " and ",
               a[ATTR_ADAM_STEP_BIAS2]);
  const double wd = a[ATTR_ADAM_STEP_WEIGHT_DECAY];
  const bool decoupled = a[ATTR_ADAM_STEP_DECOUPLED] != 0;
  k.b1 = static_cast<float>(a[ATTR_ADAM_STEP_BETA1]);
  k.b2 = static_cast<float>(a[ATTR_ADAM_STEP_BETA2]);
  // 1 - beta in double, rounded once (as PyTorch): 1.0f - 0.999f is 0.00099998713, which scaled every v by
  // 1.3e-5 and so every step by 6.5e-6 too much
  k.c1 = static_cast<float>(1.0 - a[ATTR_ADAM_STEP_BETA1]);
  k.c2 = static_cast<float>(1.0 - a[ATTR_ADAM_STEP_BETA2]);
  k.l2 = decoupled ? 0.0f : static_cast<float>(wd);
  k.shrink = decoupled ? static_cast<float>(1.0 - a[ATTR_ADAM_STEP_LR] * wd) : 1.0f;
  k.step = static_cast<float>(a[ATTR_ADAM_STEP_LR] / a[ATTR_ADAM_STEP_BIAS1]);  // lr / (1 - beta1^t)
  k.inv_sqrt_bias2 = static_cast<float>(1.0 / std::sqrt(a[ATTR_ADAM_STEP_BIAS2]));
  k.eps = static_cast<float>(a[ATTR_ADAM_STEP_EPS]);
  return Status::ok();
}

static Status k_adam_step(const TensorView* in, int nin, const TensorView&, const double* a) {
  KILN_REQUIRE(nin == 4 || nin == 5, ST_ARG, "adamStep takes param, grad, m, v and optionally vmax, got ", nin,
               " inputs");
  if (Status s = check_same_params(in, 0, nin, "adamStep"); !s.good()) return s;
  AdamK k;
  if (Status s = adam_constants(a, "adamStep", k); !s.good()) return s;
  float* __restrict p = in[0].ptr<float>();
  const float* __restrict g = in[1].ptr<float>();
  float* __restrict m = in[2].ptr<float>();
  float* __restrict v = in[3].ptr<float>();
  float* __restrict vmax = nin == 5 ? in[4].ptr<float>() : nullptr;
  parallel_for(in[0].numel(), kGrain, [=](int64_t lo, int64_t hi) {
    if (vmax)
      adam_range<true>(p + lo, g + lo, m + lo, v + lo, vmax + lo, hi - lo, k.b1, k.b2, k.c1, k.c2, k.l2, k.shrink,
                       k.step, k.inv_sqrt_bias2, k.eps);
    else
      adam_range<false>(p + lo, g + lo, m + lo, v + lo, nullptr, hi - lo, k.b1, k.b2, k.c1, k.c2, k.l2, k.shrink,
                        k.step, k.inv_sqrt_bias2, k.eps);
  });
  return Status::ok();
}

// The multi-tensor steps: 1 to 8 groups of `width` inputs (param first, all of one shape). Their elements are
// numbered one after the other and cut into ranges for the threads, so small parameters share a task instead of
// a call each; run(group's first input, offset, count) updates one group's share of a range.
template <class Run>
static Status over_groups(const TensorView* in, int nin, int width, const char* op, const char* what, Run&& run) {
  constexpr int kMaxGroups = 8;
  KILN_REQUIRE(nin >= width && nin <= width * kMaxGroups && nin % width == 0, ST_ARG, op, " takes 1 to 8 groups of ",
               what, ", got ", nin, " inputs");
  const int groups = nin / width;
  int64_t start[kMaxGroups + 1] = {0};
  for (int q = 0; q < groups; ++q) {
    if (Status s = check_same_params(in, width * q, width, op); !s.good()) return s;
    start[q + 1] = start[q] + in[width * q].numel();
  }
  parallel_for(start[groups], kGrain, [&](int64_t lo, int64_t hi) {
    for (int q = 0; q < groups; ++q) {
      const int64_t b = std::max(lo, start[q]), e = std::min(hi, start[q + 1]);
      if (b < e) run(in + width * q, b - start[q], e - b);
    }
  });
  return Status::ok();
}

// Up to 8 parameters (param, grad, m, v each) with one step count
static Status k_adam_step_multi(const TensorView* in, int nin, const TensorView&, const double* a) {
  AdamK k;
  if (Status s = adam_constants(a, "adamStepMulti", k); !s.good()) return s;
  return over_groups(
      in, nin, 4, "adamStepMulti", "(param, grad, m, v)", [&](const TensorView* g, int64_t o, int64_t n) {
        adam_range<false>(g[0].ptr<float>() + o, g[1].ptr<float>() + o, g[2].ptr<float>() + o, g[3].ptr<float>() + o,
                          nullptr, n, k.b1, k.b2, k.c1, k.c2, k.l2, k.shrink, k.step, k.inv_sqrt_bias2, k.eps);
      });
}

// sgdStep's and sgdStepMulti's attributes (lr, momentum, dampening, weightDecay, nesterov, firstStep) as the
// float operands of sgd_range
struct SgdK {
  float lr, mom, keep, wd;  // keep: 1 - dampening
  bool nesterov, first;
};
static SgdK sgd_constants(const double* a) {
  return SgdK{static_cast<float>(a[ATTR_SGD_STEP_LR]),
              static_cast<float>(a[ATTR_SGD_STEP_MOMENTUM]),
              static_cast<float>(1.0 - a[ATTR_SGD_STEP_DAMPENING]),
              static_cast<float>(a[ATTR_SGD_STEP_WEIGHT_DECAY]),
              a[ATTR_SGD_STEP_NESTEROV] != 0,
              a[ATTR_SGD_STEP_FIRST_STEP] != 0};
}

static Status k_sgd_step(const TensorView* in, int nin, const TensorView&, const double* a) {
  KILN_REQUIRE(nin == 2 || nin == 3, ST_ARG, "sgdStep takes param, grad and optionally a momentum buffer, got ", nin,
               " inputs");
  if (Status s = check_same_params(in, 0, nin, "sgdStep"); !s.good()) return s;
  float* __restrict p = in[0].ptr<float>();
  const float* __restrict g = in[1].ptr<float>();
  float* __restrict buf = nin == 3 ? in[2].ptr<float>() : nullptr;
  const SgdK k = sgd_constants(a);
  KILN_REQUIRE(!(k.nesterov && !buf), ST_ARG, "sgdStep: nesterov needs a momentum buffer");
  parallel_for(in[0].numel(), kGrain, [=](int64_t lo, int64_t hi) {
    sgd_range(p + lo, g + lo, buf ? buf + lo : nullptr, hi - lo, k.lr, k.mom, k.keep, k.wd, k.nesterov, k.first);
  });
  return Status::ok();
}

// Up to 8 parameters (param, grad, momentum buffer each) whose buffers are all new or all not
static Status k_sgd_step_multi(const TensorView* in, int nin, const TensorView&, const double* a) {
  const SgdK k = sgd_constants(a);
  return over_groups(in, nin, 3, "sgdStepMulti", "(param, grad, momentum buffer)",
                     [&](const TensorView* g, int64_t o, int64_t n) {
                       sgd_range(g[0].ptr<float>() + o, g[1].ptr<float>() + o, g[2].ptr<float>() + o, n, k.lr, k.mom,
                                 k.keep, k.wd, k.nesterov, k.first);
                     });
}

}  // namespace optim

void register_optim(KernelTable& t) {
  t.fn[OP_ADAM_STEP] = optim::k_adam_step;
  t.fn[OP_ADAM_STEP_MULTI] = optim::k_adam_step_multi;
  t.fn[OP_SGD_STEP] = optim::k_sgd_step;
  t.fn[OP_SGD_STEP_MULTI] = optim::k_sgd_step_multi;
}

#endif
