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
  /** The input position (ih, iw) that tap (i, j) of output (oh, ow) reads; false when it lies in the padding. */
  KILN_HD bool tap_in(int64_t oh, int64_t ow, int64_t i, int64_t j, int64_t& ih, int64_t& iw) const {
    ih = oh * sh - ph + i * dh;
    iw = ow * sw - pw + j * dw;
    return ih >= 0 && ih < H && iw >= 0 && iw < W;
  }
};

/** Tap k of a conv's taps in (channel, i, j) order, khw = kh * kw; in 32 bits, for callers that checked k < 2^31. */
struct ConvTap {
  int32_t ch, i, j;
};
KILN_HD inline ConvTap conv_tap(int32_t k, int32_t khw, int32_t kw) {
  const int32_t ch = k / khw, r = k - ch * khw, i = r / kw;
  return {ch, i, r - i * kw};
}

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

/**
 * The int8 convolution's integer sum at output (oh, ow) of output channel weights wo [C, kh, kw]: the sum over
 * in-bounds taps of (code - zero) * w, over one image's uint8 codes xi [C, H, W] (padding stands for 0, so it
 * adds nothing). Exact in int32 while C*kh*kw <= 65536. The cpu's fallback path (CUDA's qconv_gemm computes the
 * same sums as a tiled implicit GEMM).
 */
inline int32_t qconv_point(const ConvGeom& g, const uint8_t* xi, const int8_t* wo, int32_t zero, int64_t oh,
                           int64_t ow) {
  int32_t acc = 0;
  for (int64_t i = 0; i < g.kh; ++i) {
    const int64_t ih = oh * g.sh - g.ph + i * g.dh;
    if (ih < 0 || ih >= g.H) continue;
    for (int64_t j = 0; j < g.kw; ++j) {
      const int64_t iw = ow * g.sw - g.pw + j * g.dw;
      if (iw < 0 || iw >= g.W) continue;
      for (int64_t c = 0; c < g.C; ++c)
        acc += (static_cast<int32_t>(xi[(c * g.H + ih) * g.W + iw]) - zero) * wo[(c * g.kh + i) * g.kw + j];
    }
  }
  return acc;
}

/**
 * The int8 convolution's float result for pool x pool window (ph, pc) of output channel weights wo, image codes xi
 * (zero point z), scale sc and bias b: each output acc * sc + b, then the ReLU when relu, and the window's max by
 * max_pool_takes' rule (pool 1: the output at (ph, pc)). The cpu's fallback path (CUDA's qconv_gemm and qconv_pool
 * follow the same steps).
 */
inline float qconv_window(const ConvGeom& g, const uint8_t* xi, const int8_t* wo, int32_t z, float sc, float b,
                          bool relu, int64_t pool, int64_t ph, int64_t pc) {
  float m = 0.f;
  for (int64_t i = 0; i < pool; ++i)
    for (int64_t j = 0; j < pool; ++j) {
      float y = static_cast<float>(qconv_point(g, xi, wo, z, ph * pool + i, pc * pool + j)) * sc + b;
      if (relu && y < 0.f) y = 0.f;
      if (max_pool_takes(y, m, i == 0 && j == 0)) m = y;
    }
  return m;
}

/** The operands of qconv2dInt8 (x float32 [N, C, H, W], wq int8 [O, C, kh, kw], wscale [O][, bias [O]]) and its
 * attributes, validated for the cpu and CUDA kernels: geometry in g, the activation scale (0 = dynamic, per
 * image) and zero point, the bias (null without one), whether a ReLU follows in the kernel, and the max pool
 * (kernel = stride = pool; 1 = none) after it. */
inline Status read_qconv(const TensorView* in, int nin, const TensorView& out, const double* attrs, ConvGeom& g,
                         float& sx, int32_t& zx, const float*& bias, bool& relu, int64_t& pool) {
  KILN_REQUIRE(nin == 3 || nin == 4, ST_ARG, "qconv2dInt8 takes (x, wq, wscale[, bias]), got ", nin, " inputs");
  const TensorView &x = in[0], &w = in[1], &ws = in[2];
  KILN_REQUIRE(x.dtype == DT_FLOAT32 && x.ndim == 4 && x.contiguous(), ST_DTYPE,
               "qconv2dInt8: x must be contiguous float32 [N, C, H, W], got ", kDTypeNames[x.dtype], " ", shape_str(x));
  KILN_REQUIRE(w.dtype == DT_INT8 && w.ndim == 4 && w.contiguous() && w.shape[1] == x.shape[1], ST_DTYPE,
               "qconv2dInt8: wq must be contiguous int8 [O, ", x.shape[1], ", kH, kW], got ", kDTypeNames[w.dtype], " ",
               shape_str(w));
  if (Status s = read_conv_attrs(attrs, g, "qconv2dInt8"); !s.good()) return s;
  KILN_REQUIRE(g.groups == 1, ST_ARG, "qconv2dInt8 takes one group, got ", g.groups);
  g.N = x.shape[0], g.C = x.shape[1], g.H = x.shape[2], g.W = x.shape[3];
  g.O = w.shape[0], g.kh = w.shape[2], g.kw = w.shape[3];
  KILN_REQUIRE(g.kh >= 1 && g.kw >= 1 && g.kh <= kMaxConvParam && g.kw <= kMaxConvParam, ST_SHAPE,
               "qconv2dInt8: kernel ", g.kh, "x", g.kw, " must be 1..2^30 on each side");
  KILN_REQUIRE(g.C * g.kh * g.kw <= 65536, ST_SHAPE, "qconv2dInt8: C*kH*kW = ", g.C * g.kh * g.kw,
               " is over 65536 (int32 accumulators could overflow)");
  g.OH = conv_out_size(g.H, g.kh, g.sh, g.ph, g.dh);
  g.OW = conv_out_size(g.W, g.kw, g.sw, g.pw, g.dw);
  KILN_REQUIRE(g.OH > 0 && g.OW > 0, ST_SHAPE, "qconv2dInt8: kernel ", g.kh, "x", g.kw,
               " is larger than the padded input ", g.H + 2 * g.ph, "x", g.W + 2 * g.pw);
  KILN_REQUIRE(ws.dtype == DT_FLOAT32 && ws.contiguous() && ws.numel() == g.O, ST_SHAPE,
               "qconv2dInt8: wscale must be float32 [", g.O, "], got ", shape_str(ws));
  bias = nullptr;
  if (nin == 4) {
    KILN_REQUIRE(in[3].dtype == DT_FLOAT32 && in[3].contiguous() && in[3].numel() == g.O, ST_SHAPE,
                 "qconv2dInt8: bias must be float32 [", g.O, "], got ", shape_str(in[3]));
    bias = in[3].ptr<float>();
  }
  const double k = attrs[ATTR_QCONV2D_INT8_POOL];
  KILN_REQUIRE(k >= 1 && k <= static_cast<double>(std::min(g.OH, g.OW)) && k == std::floor(k), ST_ARG,
               "qconv2dInt8: pool must be an integer from 1 (none) to the output's smaller side ", std::min(g.OH, g.OW),
               ", got ", k);
  pool = static_cast<int64_t>(k);
  KILN_REQUIRE(out.dtype == DT_FLOAT32 && out.ndim == 4 && out.shape[0] == g.N && out.shape[1] == g.O &&
                   out.shape[2] == g.OH / pool && out.shape[3] == g.OW / pool,
               ST_SHAPE, "qconv2dInt8 writes float32 [", g.N, ", ", g.O, ", ", g.OH / pool, ", ", g.OW / pool, "]");
  const double s = attrs[ATTR_QCONV2D_INT8_X_SCALE], z = attrs[ATTR_QCONV2D_INT8_X_ZERO];
  KILN_REQUIRE(s >= 0 && s < 3.4e38 && z >= 0 && z <= 255 && z == static_cast<double>(static_cast<int>(z)) &&
                   (s == 0 || static_cast<float>(s) > 0.f),
               ST_ARG,
               "qconv2dInt8: xScale must be >= 0 (0 = dynamic per image) and xZero an integer in [0, 255], got ", s,
               " and ", z);
  const double r = attrs[ATTR_QCONV2D_INT8_RELU];
  KILN_REQUIRE(r == 0 || r == 1, ST_ARG, "qconv2dInt8: relu must be 0 or 1, got ", r);
  sx = static_cast<float>(s);
  zx = static_cast<int32_t>(z);
  relu = r == 1;
  return Status::ok();
}

}  // namespace kiln
