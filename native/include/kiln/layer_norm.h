// The fused layer-norm kernels' arguments, shared by the cpu kernels (native/cpu/reduce.cc) and the CUDA
// launchers (kernels/cuda/reduce.cu): one validation of the inputs and the eps attribute.
#pragma once
#include <cmath>
#include <cstdint>

#include "kiln/cpu_common.h"
#include "kiln/op_ids.h"

namespace kiln {

/** x [R, C]; forward: a = weight, b = bias (or null); backward: a = dy, b = weight (or null). */
struct LnArgs {
  int64_t R, C;
  const float *x, *a, *b;  // forward: weight, bias; backward: dy, weight
  float eps;
};

/** Checks a layerNorm (fwd) or layerNormBackward call into `a`. */
inline Status ln_check(const TensorView* in, int nin, bool fwd, const double* attrs, LnArgs& a) {
  const char* op = fwd ? "layerNorm" : "layerNormBackward";
  KILN_REQUIRE(fwd ? (nin == 1 || nin == 3) : (nin == 2 || nin == 3), ST_ARG, op,
               fwd ? " takes x and optionally weight and bias, got " : " takes x, dy and optionally weight, got ", nin,
               " inputs");
  for (int i = 0; i < nin; ++i)
    KILN_REQUIRE(in[i].dtype == DT_FLOAT32 && in[i].contiguous(), ST_DTYPE, op, ": inputs must be contiguous float32");
  KILN_REQUIRE(in[0].ndim == 2, ST_SHAPE, op, ": x must be [R, C], got ", shape_str(in[0]));
  a.R = in[0].shape[0];
  a.C = in[0].shape[1];
  if (!fwd) KILN_REQUIRE(same_shape(in[1], in[0]), ST_SHAPE, op, ": dy must be shaped like x, got ", shape_str(in[1]));
  for (int i = fwd ? 1 : 2; i < nin; ++i)
    KILN_REQUIRE(in[i].numel() == a.C, ST_SHAPE, op, ": weight and bias must have ", a.C, " values, got ",
                 shape_str(in[i]));
  const double eps = attrs[ATTR_LAYER_NORM_EPS];
  KILN_REQUIRE(eps >= 0 && std::isfinite(eps), ST_ARG, op, ": eps must be finite and >= 0, got ", eps);
  a.eps = static_cast<float>(eps);
  a.x = in[0].ptr<float>();
  a.a = nin > 1 ? in[1].ptr<float>() : nullptr;
  a.b = nin > 2 ? in[2].ptr<float>() : nullptr;
  return Status::ok();
}

}  // namespace kiln
