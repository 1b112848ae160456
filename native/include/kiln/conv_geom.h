// Convolution and pooling geometry shared by the cpu kernels (native/cpu/conv.cc) and the CUDA launchers and
// kernels (kernels/cuda/conv.cu): one struct, one reading and validation of the conv and pool attribute groups,
// one output-size rule and one max-pool window rule, so the backends cannot disagree on what they accept or on
// which tap a window picks.
#pragma once
#include <cstdint>

#include "kiln/cpu_common.h"
#include "kiln/hd.h"
#include "kiln/op_ids.h"

namespace kiln {

/** NCHW geometry. Pooling uses it with dilation 1 and one group (and may fold N*C into N). */
struct ConvGeom {
  int64_t N = 0, C = 0, H = 0, W = 0, O = 0, kh = 0, kw = 0, OH = 0, OW = 0;
  int64_t sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1, groups = 1;
  bool include_pad = false;  // average pooling: divide by kh*kw rather than the in-bounds taps
  KILN_HD int64_t Cg() const { return C / groups; }
  KILN_HD int64_t Og() const { return O / groups; }
  KILN_HD int64_t ckk() const { return Cg() * kh * kw; }
  KILN_HD int64_t P() const { return OH * OW; }
};

/** Output size along one axis (0 when the dilated kernel does not fit the padded input). */
KILN_HD inline int64_t conv_out_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d) {
  const int64_t span = d * (k - 1) + 1;
  if (in + 2 * p < span) return 0;
  return (in + 2 * p - span) / s + 1;
}

/** Every stride, padding, dilation, kernel size and group count is at most this: keeps products far from
 * int64 overflow. */
inline constexpr int64_t kMaxConvParam = int64_t{1} << 30;

/** Stride, padding, dilation and groups from the conv attribute group (ATTR_CONV_*), validated. */
inline Status read_conv_attrs(const double* attrs, ConvGeom& g, const char* op) {
  g.sh = static_cast<int64_t>(attrs[ATTR_CONV_STRIDE_H]);
  g.sw = static_cast<int64_t>(attrs[ATTR_CONV_STRIDE_W]);
  g.ph = static_cast<int64_t>(attrs[ATTR_CONV_PAD_H]);
  g.pw = static_cast<int64_t>(attrs[ATTR_CONV_PAD_W]);
  g.dh = static_cast<int64_t>(attrs[ATTR_CONV_DILATION_H]);
  g.dw = static_cast<int64_t>(attrs[ATTR_CONV_DILATION_W]);
  g.groups = static_cast<int64_t>(attrs[ATTR_CONV_GROUPS]);
  const int64_t m = kMaxConvParam;
  KILN_REQUIRE(g.sh <= m && g.sw <= m && g.ph <= m && g.pw <= m && g.dh <= m && g.dw <= m && g.groups <= m, ST_ARG, op,
               " stride, padding, dilation and groups must be at most 2^30");
  KILN_REQUIRE(g.sh >= 1 && g.sw >= 1 && g.dh >= 1 && g.dw >= 1 && g.ph >= 0 && g.pw >= 0 && g.groups >= 1, ST_ARG, op,
               " needs stride >= 1, dilation >= 1, padding >= 0, groups >= 1; got stride [", g.sh, ", ", g.sw,
               "] padding [", g.ph, ", ", g.pw, "] dilation [", g.dh, ", ", g.dw, "] groups ", g.groups);
  return Status::ok();
}

/** Kernel size, stride and padding from the pool attribute group (ATTR_POOL_*), validated; no dilation, one
 * group. */
inline Status read_pool_attrs(const double* attrs, ConvGeom& g, const char* op) {
  g.kh = static_cast<int64_t>(attrs[ATTR_POOL_KERNEL_H]);
  g.kw = static_cast<int64_t>(attrs[ATTR_POOL_KERNEL_W]);
  g.sh = static_cast<int64_t>(attrs[ATTR_POOL_STRIDE_H]);
  g.sw = static_cast<int64_t>(attrs[ATTR_POOL_STRIDE_W]);
  g.ph = static_cast<int64_t>(attrs[ATTR_POOL_PAD_H]);
  g.pw = static_cast<int64_t>(attrs[ATTR_POOL_PAD_W]);
  g.dh = g.dw = g.groups = 1;
  const int64_t m = kMaxConvParam;
  KILN_REQUIRE(g.kh <= m && g.kw <= m && g.sh <= m && g.sw <= m && g.ph <= m && g.pw <= m, ST_ARG, op,
               " kernel, stride and padding must be at most 2^30");
  KILN_REQUIRE(g.kh >= 1 && g.kw >= 1 && g.sh >= 1 && g.sw >= 1 && g.ph >= 0 && g.pw >= 0, ST_ARG, op,
               " needs kernel >= 1, stride >= 1, padding >= 0");
  KILN_REQUIRE(g.ph * 2 <= g.kh && g.pw * 2 <= g.kw, ST_ARG, op, " padding must be at most half the kernel size");
  return Status::ok();
}

/**
 * The max-pool window rule of every backend, scanning taps in row-major order: the first tap, then any larger
 * one, and a NaN beats every number and stays (so the max is NaN when any tap is, and the gradient goes to the
 * first maximum, or the first NaN). `m` is the value picked so far; `first` is true for the first in-bounds tap.
 */
KILN_HD inline bool max_pool_takes(float v, float m, bool first) {
  return first | ((m == m) & ((v > m) | (v != v)));  // no short-circuit: callers select with it branch-free
}

}  // namespace kiln
