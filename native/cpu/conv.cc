// conv2d (NCHW, groups, stride, padding, dilation) via im2col + GEMM, its input/weight backward kernels
// (col2im), and max/avg pooling with backward.
#ifndef KILN_ISA
#include "kiln/conv_geom.h"
#include "kiln/cpu_common.h"
#define KILN_ISA_FILE "cpu/conv.cc"
#include "kiln/isa_passes.h"
#else
#include "kiln/isa_helpers.inl"
#include "kiln/gemm.inl"

namespace cv {

// Reads the conv attributes and the weight's geometry (O, C = C/groups * groups, kH, kW).
static Status geom_from(const TensorView& w4, const double* attrs, ConvGeom& g) {
  if (Status s = read_conv_attrs(attrs, g, "conv2d"); !s.good()) return s;
  KILN_REQUIRE(w4.ndim == 4, ST_SHAPE, "conv2d weight must be [O, C/groups, kH, kW], got ", shape_str(w4));
  g.O = w4.shape[0];
  g.kh = w4.shape[2];
  g.kw = w4.shape[3];
  KILN_REQUIRE(g.O % g.groups == 0, ST_SHAPE, "conv2d out channels ", g.O, " not divisible by groups ", g.groups);
  g.C = w4.shape[1] * g.groups;
  return Status::ok();
}

static void im2col(const float* x, const ConvGeom& g, float* col) {
  // col[(c*kh + i)*kw + j][oh*OW + ow] for the Cg channels starting at x
  for (int64_t c = 0; c < g.Cg(); ++c)
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        float* dst = col + ((c * g.kh + i) * g.kw + j) * g.P();
        const float* src = x + c * g.H * g.W;
        for (int64_t oh = 0; oh < g.OH; ++oh) {
          const int64_t ih = oh * g.sh - g.ph + i * g.dh;
          float* d = dst + oh * g.OW;
          if (ih < 0 || ih >= g.H) {
            for (int64_t ow = 0; ow < g.OW; ++ow) d[ow] = 0.f;
            continue;
          }
          const float* srow = src + ih * g.W;
          for (int64_t ow = 0; ow < g.OW; ++ow) {
            const int64_t iw = ow * g.sw - g.pw + j * g.dw;
            d[ow] = (iw >= 0 && iw < g.W) ? srow[iw] : 0.f;
          }
        }
      }
}

static void col2im(const float* col, const ConvGeom& g, float* x) {
  for (int64_t c = 0; c < g.Cg(); ++c)
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        const float* srcc = col + ((c * g.kh + i) * g.kw + j) * g.P();
        float* dst = x + c * g.H * g.W;
        for (int64_t oh = 0; oh < g.OH; ++oh) {
          const int64_t ih = oh * g.sh - g.ph + i * g.dh;
          if (ih < 0 || ih >= g.H) continue;
          float* drow = dst + ih * g.W;
          const float* s = srcc + oh * g.OW;
          for (int64_t ow = 0; ow < g.OW; ++ow) {
            const int64_t iw = ow * g.sw - g.pw + j * g.dw;
            if (iw >= 0 && iw < g.W) drow[iw] += s[ow];
          }
        }
      }
}

static bool pointwise(const ConvGeom& g) {
  return g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0;
}

static Status check_f32(const TensorView* in, int nin, const TensorView& out, const char* op) {
  for (int i = 0; i < nin; ++i) {
    KILN_REQUIRE(in[i].dtype == DT_FLOAT32, ST_DTYPE, op, " takes float32, got ", kDTypeNames[in[i].dtype]);
    KILN_REQUIRE(in[i].contiguous(), ST_ARG, op, " needs contiguous inputs");
  }
  KILN_REQUIRE(out.dtype == DT_FLOAT32, ST_DTYPE, op, " writes float32");
  return Status::ok();
}

static Status k_conv2d(const TensorView* in, int nin, const TensorView& out, const double* attrs) {
  if (Status s = check_f32(in, nin, out, "conv2d"); !s.good()) return s;
  const TensorView& x = in[0];
  const TensorView& w = in[1];
  KILN_REQUIRE(x.ndim == 4, ST_SHAPE, "conv2d input must be [N, C, H, W], got ", shape_str(x));
  ConvGeom g{};
  if (Status s = geom_from(w, attrs, g); !s.good()) return s;
  g.N = x.shape[0];
  g.H = x.shape[2];
  g.W = x.shape[3];
  KILN_REQUIRE(x.shape[1] == g.C, ST_SHAPE, "conv2d input has ", x.shape[1], " channels but the weight ", shape_str(w),
               " with groups ", g.groups, " expects ", g.C);
  g.OH = conv_out_size(g.H, g.kh, g.sh, g.ph, g.dh);
  g.OW = conv_out_size(g.W, g.kw, g.sw, g.pw, g.dw);
  KILN_REQUIRE(
      out.ndim == 4 && out.shape[0] == g.N && out.shape[1] == g.O && out.shape[2] == g.OH && out.shape[3] == g.OW,
      ST_SHAPE, "conv2d output ", shape_str(out), " does not match the expected [", g.N, ", ", g.O, ", ", g.OH, ", ",
      g.OW, "]");
  if (out.numel() == 0) return Status::ok();
  const float* px = x.ptr<float>();
  const float* pw = w.ptr<float>();
  float* po = out.ptr<float>();
  const bool pw1 = pointwise(g);
  auto image = [&](int64_t n, bool par, std::vector<float>& col) {
    for (int64_t gi = 0; gi < g.groups; ++gi) {
      const float* xg = px + (n * g.C + gi * g.Cg()) * g.H * g.W;
      const float* src = xg;
      if (!pw1) {
        col.resize(static_cast<size_t>(g.ckk() * g.P()));
        im2col(xg, g, col.data());
        src = col.data();
      }
      GemmArgs a{g.Og(), g.P(), g.ckk(), pw + gi * g.Og() * g.ckk(),           g.ckk(), 1,
                 src,    g.P(), 1,       po + (n * g.O + gi * g.Og()) * g.P(), g.P(),   false,
                 par};
      sgemm(a);
    }
  };
  if (g.N >= num_threads() && num_threads() > 1) {
    parallel_for(g.N, 1, [&](int64_t lo, int64_t hi) {
      std::vector<float> col;
      for (int64_t n = lo; n < hi; ++n) image(n, false, col);
    });
  } else {
    std::vector<float> col;
    for (int64_t n = 0; n < g.N; ++n) image(n, true, col);
  }
  return Status::ok();
}

// in: gy [N, O, OH, OW], w; attrs: conv attrs + inH, inW -> dx [N, C, H, W]
static Status k_conv2d_backward_input(const TensorView* in, int nin, const TensorView& out, const double* attrs) {
  if (Status s = check_f32(in, nin, out, "conv2dBackwardInput"); !s.good()) return s;
  const TensorView& gy = in[0];
  const TensorView& w = in[1];
  ConvGeom g{};
  if (Status s = geom_from(w, attrs, g); !s.good()) return s;
  KILN_REQUIRE(gy.ndim == 4 && gy.shape[1] == g.O, ST_SHAPE, "conv2dBackwardInput gradient ", shape_str(gy),
               " does not match weight ", shape_str(w));
  g.N = gy.shape[0];
  g.H = static_cast<int64_t>(attrs[ATTR_CONV2D_BACKWARD_INPUT_IN_H]);
  g.W = static_cast<int64_t>(attrs[ATTR_CONV2D_BACKWARD_INPUT_IN_W]);
  KILN_REQUIRE(g.H >= 0 && g.W >= 0 && g.H <= (int64_t{1} << 30) && g.W <= (int64_t{1} << 30), ST_ARG,
               "conv2dBackwardInput input size must be in [0, 2^30]");
  g.OH = conv_out_size(g.H, g.kh, g.sh, g.ph, g.dh);
  g.OW = conv_out_size(g.W, g.kw, g.sw, g.pw, g.dw);
  KILN_REQUIRE(gy.shape[2] == g.OH && gy.shape[3] == g.OW, ST_SHAPE, "conv2dBackwardInput gradient ", shape_str(gy),
               " does not match input size ", g.H, "x", g.W);
  KILN_REQUIRE(
      out.ndim == 4 && out.shape[0] == g.N && out.shape[1] == g.C && out.shape[2] == g.H && out.shape[3] == g.W,
      ST_SHAPE, "conv2dBackwardInput output ", shape_str(out), " has the wrong shape");
  float* pdx = out.ptr<float>();
  const int64_t total = out.numel();
  for (int64_t i = 0; i < total; ++i) pdx[i] = 0.f;
  if (gy.numel() == 0) return Status::ok();
  const float* pgy = gy.ptr<float>();
  const float* pw = w.ptr<float>();
  auto image = [&](int64_t n, bool par, std::vector<float>& col) {
    for (int64_t gi = 0; gi < g.groups; ++gi) {
      float* dxg = pdx + (n * g.C + gi * g.Cg()) * g.H * g.W;
      const float* wg = pw + gi * g.Og() * g.ckk();
      const float* gyg = pgy + (n * g.O + gi * g.Og()) * g.P();
      if (pointwise(g)) {  // dx = W^T gy directly
        GemmArgs a{g.ckk(), g.P(), g.Og(), wg, 1, g.ckk(), gyg, g.P(), 1, dxg, g.P(), true, par};
        sgemm(a);
        continue;
      }
      col.resize(static_cast<size_t>(g.ckk() * g.P()));
      GemmArgs a{g.ckk(), g.P(), g.Og(), wg, 1, g.ckk(), gyg, g.P(), 1, col.data(), g.P(), false, par};
      sgemm(a);
      col2im(col.data(), g, dxg);
    }
  };
  if (g.N >= num_threads() && num_threads() > 1) {
    parallel_for(g.N, 1, [&](int64_t lo, int64_t hi) {
      std::vector<float> col;
      for (int64_t n = lo; n < hi; ++n) image(n, false, col);
    });
  } else {
    std::vector<float> col;
    for (int64_t n = 0; n < g.N; ++n) image(n, true, col);
  }
  return Status::ok();
}

// in: x [N, C, H, W], gy [N, O, OH, OW]; attrs: conv attrs + kH, kW -> dw [O, C/groups, kH, kW]
static Status k_conv2d_backward_weight(const TensorView* in, int nin, const TensorView& out, const double* attrs) {
  if (Status s = check_f32(in, nin, out, "conv2dBackwardWeight"); !s.good()) return s;
  const TensorView& x = in[0];
  const TensorView& gy = in[1];
  ConvGeom g{};
  if (Status s = read_conv_attrs(attrs, g, "conv2d"); !s.good()) return s;
  KILN_REQUIRE(x.ndim == 4 && gy.ndim == 4 && out.ndim == 4, ST_SHAPE, "conv2dBackwardWeight needs 4-d tensors, got ",
               shape_str(x), ", ", shape_str(gy), " -> ", shape_str(out));
  g.N = x.shape[0];
  g.C = x.shape[1];
  g.H = x.shape[2];
  g.W = x.shape[3];
  g.O = gy.shape[1];
  g.kh = static_cast<int64_t>(attrs[ATTR_CONV2D_BACKWARD_WEIGHT_KERNEL_H]);
  g.kw = static_cast<int64_t>(attrs[ATTR_CONV2D_BACKWARD_WEIGHT_KERNEL_W]);
  KILN_REQUIRE(g.kh >= 1 && g.kw >= 1 && g.kh <= (int64_t{1} << 30) && g.kw <= (int64_t{1} << 30), ST_ARG,
               "conv2dBackwardWeight kernel size must be in [1, 2^30]");
  KILN_REQUIRE(g.C % g.groups == 0 && g.O % g.groups == 0, ST_SHAPE, "channels ", g.C, "/", g.O,
               " not divisible by groups ", g.groups);
  g.OH = conv_out_size(g.H, g.kh, g.sh, g.ph, g.dh);
  g.OW = conv_out_size(g.W, g.kw, g.sw, g.pw, g.dw);
  KILN_REQUIRE(gy.shape[0] == g.N && gy.shape[2] == g.OH && gy.shape[3] == g.OW, ST_SHAPE,
               "conv2dBackwardWeight gradient ", shape_str(gy), " does not match input ", shape_str(x));
  KILN_REQUIRE(out.shape[0] == g.O && out.shape[1] == g.Cg() && out.shape[2] == g.kh && out.shape[3] == g.kw, ST_SHAPE,
               "conv2dBackwardWeight output ", shape_str(out), " has the wrong shape");
  float* pdw = out.ptr<float>();
  const int64_t total = out.numel();
  for (int64_t i = 0; i < total; ++i) pdw[i] = 0.f;
  if (x.numel() == 0 || gy.numel() == 0) return Status::ok();
  const float* px = x.ptr<float>();
  const float* pgy = gy.ptr<float>();
  std::vector<float> col;
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t gi = 0; gi < g.groups; ++gi) {
      const float* xg = px + (n * g.C + gi * g.Cg()) * g.H * g.W;
      const float* src = xg;
      if (!pointwise(g)) {
        col.resize(static_cast<size_t>(g.ckk() * g.P()));
        im2col(xg, g, col.data());
        src = col.data();
      }
      // dW_g [Og, ckk] += gy_g [Og, P] * col^T [P, ckk]
      GemmArgs a{g.Og(), g.ckk(), g.P(), pgy + (n * g.O + gi * g.Og()) * g.P(), g.P(),   1,
                 src,    1,       g.P(), pdw + gi * g.Og() * g.ckk(),           g.ckk(), true,
                 true};
      sgemm(a);
    }
  return Status::ok();
}

static Status pool_geom(const TensorView& x, const double* attrs, ConvGeom& p, const char* op, int64_t H = -1,
                        int64_t W = -1) {
  if (Status s = read_pool_attrs(attrs, p, op); !s.good()) return s;
  KILN_REQUIRE(x.ndim == 4, ST_SHAPE, op, " input must be [N, C, H, W], got ", shape_str(x));
  p.N = x.shape[0];
  p.C = x.shape[1];
  p.H = H >= 0 ? H : x.shape[2];
  p.W = W >= 0 ? W : x.shape[3];
  p.OH = conv_out_size(p.H, p.kh, p.sh, p.ph, 1);
  p.OW = conv_out_size(p.W, p.kw, p.sw, p.pw, 1);
  return Status::ok();
}

static Status k_max_pool2d(const TensorView* in, int nin, const TensorView& out, const double* attrs) {
  if (Status s = check_f32(in, nin, out, "maxPool2d"); !s.good()) return s;
  ConvGeom p{};
  if (Status s = pool_geom(in[0], attrs, p, "maxPool2d"); !s.good()) return s;
  KILN_REQUIRE(
      out.ndim == 4 && out.shape[0] == p.N && out.shape[1] == p.C && out.shape[2] == p.OH && out.shape[3] == p.OW,
      ST_SHAPE, "maxPool2d output ", shape_str(out), " has the wrong shape");
  const float* x = in[0].ptr<float>();
  float* o = out.ptr<float>();
  parallel_for(p.N * p.C, 4, [&](int64_t lo, int64_t hi) {
    for (int64_t nc = lo; nc < hi; ++nc) {
      const float* xp = x + nc * p.H * p.W;
      float* op = o + nc * p.OH * p.OW;
      for (int64_t oh = 0; oh < p.OH; ++oh)
        for (int64_t ow = 0; ow < p.OW; ++ow) {
          float m = -__builtin_inff();
          bool nan = false;
          for (int64_t i = 0; i < p.kh; ++i) {
            const int64_t ih = oh * p.sh - p.ph + i;
            if (ih < 0 || ih >= p.H) continue;
            for (int64_t j = 0; j < p.kw; ++j) {
              const int64_t iw = ow * p.sw - p.pw + j;
              if (iw < 0 || iw >= p.W) continue;
              const float v = xp[ih * p.W + iw];
              nan |= v != v;
              m = v > m ? v : m;
            }
          }
          op[oh * p.OW + ow] = nan ? __builtin_nanf("") : m;
        }
    }
  });
  return Status::ok();
}

// in: x, gy -> dx; the gradient goes to the first maximum of each window (as the forward picked it)
static Status k_max_pool2d_backward(const TensorView* in, int nin, const TensorView& out, const double* attrs) {
  if (Status s = check_f32(in, nin, out, "maxPool2dBackward"); !s.good()) return s;
  ConvGeom p{};
  if (Status s = pool_geom(in[0], attrs, p, "maxPool2dBackward"); !s.good()) return s;
  KILN_REQUIRE(same_shape(in[0], out), ST_SHAPE, "maxPool2dBackward output must match the input shape");
  const TensorView& gy = in[1];
  KILN_REQUIRE(gy.ndim == 4 && gy.shape[0] == p.N && gy.shape[1] == p.C && gy.shape[2] == p.OH && gy.shape[3] == p.OW,
               ST_SHAPE, "maxPool2dBackward gradient ", shape_str(gy), " does not match the pooled shape");
  const float* x = in[0].ptr<float>();
  const float* g = gy.ptr<float>();
  float* o = out.ptr<float>();
  if (p.sh == p.kh && p.sw == p.kw && p.ph == 0 && p.pw == 0) {
    // windows that tile the input without overlap (2x2 stride 2, the common case): each window writes all its
    // taps once (the gradient at its first maximum, 0 elsewhere), so no separate zeroing pass and no +=
    parallel_for(p.N * p.C, 4, [&](int64_t lo, int64_t hi) {
      for (int64_t nc = lo; nc < hi; ++nc) {
        const float* xp = x + nc * p.H * p.W;
        const float* gp = g + nc * p.OH * p.OW;
        float* op = o + nc * p.H * p.W;
        for (int64_t oh = 0; oh < p.OH; ++oh)
          for (int64_t ow = 0; ow < p.OW; ++ow) {
            const int64_t h0 = oh * p.kh, w0 = ow * p.kw;
            float m = -__builtin_inff();
            int64_t best = -1;
            for (int64_t i = 0; i < p.kh; ++i)
              for (int64_t j = 0; j < p.kw; ++j) {
                const int64_t at = (h0 + i) * p.W + w0 + j;
                op[at] = 0.f;
                if (max_pool_takes(xp[at], m, best < 0)) {
                  m = xp[at];
                  best = at;
                }
              }
            op[best] = gp[oh * p.OW + ow];
          }
        // rows and columns past the last whole window get no gradient
        for (int64_t h = 0; h < p.H; ++h)
          for (int64_t w = (h < p.OH * p.kh ? p.OW * p.kw : 0); w < p.W; ++w) op[h * p.W + w] = 0.f;
      }
    });
    return Status::ok();
  }
  parallel_for(p.N * p.C, 4, [&](int64_t lo, int64_t hi) {
    for (int64_t nc = lo; nc < hi; ++nc) {
      const float* xp = x + nc * p.H * p.W;
      const float* gp = g + nc * p.OH * p.OW;
      float* op = o + nc * p.H * p.W;
      for (int64_t i = 0; i < p.H * p.W; ++i) op[i] = 0.f;
      for (int64_t oh = 0; oh < p.OH; ++oh)
        for (int64_t ow = 0; ow < p.OW; ++ow) {
          float m = -__builtin_inff();
          int64_t best = -1;
          for (int64_t i = 0; i < p.kh; ++i) {
            const int64_t ih = oh * p.sh - p.ph + i;
            if (ih < 0 || ih >= p.H) continue;
            for (int64_t j = 0; j < p.kw; ++j) {
              const int64_t iw = ow * p.sw - p.pw + j;
              if (iw < 0 || iw >= p.W) continue;
              const float v = xp[ih * p.W + iw];
              if (max_pool_takes(v, m, best < 0)) {
                m = v;
                best = ih * p.W + iw;
              }
            }
          }
          if (best >= 0) op[best] += gp[oh * p.OW + ow];
        }
    }
  });
  return Status::ok();
}

static Status k_avg_pool2d(const TensorView* in, int nin, const TensorView& out, const double* attrs) {
  if (Status s = check_f32(in, nin, out, "avgPool2d"); !s.good()) return s;
  ConvGeom p{};
  if (Status s = pool_geom(in[0], attrs, p, "avgPool2d"); !s.good()) return s;
  const bool include_pad = attrs[ATTR_AVG_POOL2D_COUNT_INCLUDE_PAD] != 0;
  KILN_REQUIRE(
      out.ndim == 4 && out.shape[0] == p.N && out.shape[1] == p.C && out.shape[2] == p.OH && out.shape[3] == p.OW,
      ST_SHAPE, "avgPool2d output ", shape_str(out), " has the wrong shape");
  const float* x = in[0].ptr<float>();
  float* o = out.ptr<float>();
  parallel_for(p.N * p.C, 4, [&](int64_t lo, int64_t hi) {
    for (int64_t nc = lo; nc < hi; ++nc) {
      const float* xp = x + nc * p.H * p.W;
      float* op = o + nc * p.OH * p.OW;
      for (int64_t oh = 0; oh < p.OH; ++oh)
        for (int64_t ow = 0; ow < p.OW; ++ow) {
          float s = 0.f;
          int64_t cnt = 0;
          for (int64_t i = 0; i < p.kh; ++i) {
            const int64_t ih = oh * p.sh - p.ph + i;
            if (ih < 0 || ih >= p.H) continue;
            for (int64_t j = 0; j < p.kw; ++j) {
              const int64_t iw = ow * p.sw - p.pw + j;
              if (iw < 0 || iw >= p.W) continue;
              s += xp[ih * p.W + iw];
              ++cnt;
            }
          }
          const int64_t div = include_pad ? p.kh * p.kw : cnt;
          op[oh * p.OW + ow] = div > 0 ? s / static_cast<float>(div) : 0.f;
        }
    }
  });
  return Status::ok();
}

// in: gy; attrs: pool attrs + countIncludePad + inH, inW -> dx
static Status k_avg_pool2d_backward(const TensorView* in, int nin, const TensorView& out, const double* attrs) {
  if (Status s = check_f32(in, nin, out, "avgPool2dBackward"); !s.good()) return s;
  ConvGeom p{};
  const int64_t H = static_cast<int64_t>(attrs[ATTR_AVG_POOL2D_BACKWARD_IN_H]),
                W = static_cast<int64_t>(attrs[ATTR_AVG_POOL2D_BACKWARD_IN_W]);
  KILN_REQUIRE(H >= 0 && W >= 0 && H <= (int64_t{1} << 30) && W <= (int64_t{1} << 30), ST_ARG,
               "avgPool2dBackward input size must be in [0, 2^30]");
  if (Status s = pool_geom(in[0], attrs, p, "avgPool2dBackward", H, W); !s.good()) return s;
  const bool include_pad = attrs[ATTR_AVG_POOL2D_BACKWARD_COUNT_INCLUDE_PAD] != 0;
  const TensorView& gy = in[0];
  KILN_REQUIRE(gy.shape[2] == p.OH && gy.shape[3] == p.OW, ST_SHAPE, "avgPool2dBackward gradient ", shape_str(gy),
               " does not match the input size ", H, "x", W);
  KILN_REQUIRE(out.ndim == 4 && out.shape[0] == p.N && out.shape[1] == p.C && out.shape[2] == H && out.shape[3] == W,
               ST_SHAPE, "avgPool2dBackward output ", shape_str(out), " has the wrong shape");
  const float* g = gy.ptr<float>();
  float* o = out.ptr<float>();
  parallel_for(p.N * p.C, 4, [&](int64_t lo, int64_t hi) {
    for (int64_t nc = lo; nc < hi; ++nc) {
      const float* gp = g + nc * p.OH * p.OW;
      float* op = o + nc * p.H * p.W;
      for (int64_t i = 0; i < p.H * p.W; ++i) op[i] = 0.f;
      for (int64_t oh = 0; oh < p.OH; ++oh)
        for (int64_t ow = 0; ow < p.OW; ++ow) {
          int64_t cnt = 0;
          for (int64_t i = 0; i < p.kh; ++i) {
            const int64_t ih = oh * p.sh - p.ph + i;
            if (ih < 0 || ih >= p.H) continue;
            for (int64_t j = 0; j < p.kw; ++j) {
              const int64_t iw = ow * p.sw - p.pw + j;
              if (iw >= 0 && iw < p.W) ++cnt;
            }
          }
          const int64_t div = include_pad ? p.kh * p.kw : cnt;
          if (div == 0) continue;
          const float v = gp[oh * p.OW + ow] / static_cast<float>(div);
          for (int64_t i = 0; i < p.kh; ++i) {
            const int64_t ih = oh * p.sh - p.ph + i;
            if (ih < 0 || ih >= p.H) continue;
            for (int64_t j = 0; j < p.kw; ++j) {
              const int64_t iw = ow * p.sw - p.pw + j;
              if (iw >= 0 && iw < p.W) op[ih * p.W + iw] += v;
            }
          }
        }
    }
  });
  return Status::ok();
}

}  // namespace cv

void register_conv(KernelTable& t) {
  t.fn[OP_CONV2D] = cv::k_conv2d;
  t.fn[OP_CONV2D_BACKWARD_INPUT] = cv::k_conv2d_backward_input;
  t.fn[OP_CONV2D_BACKWARD_WEIGHT] = cv::k_conv2d_backward_weight;
  t.fn[OP_MAX_POOL2D] = cv::k_max_pool2d;
  t.fn[OP_MAX_POOL2D_BACKWARD] = cv::k_max_pool2d_backward;
  t.fn[OP_AVG_POOL2D] = cv::k_avg_pool2d;
  t.fn[OP_AVG_POOL2D_BACKWARD] = cv::k_avg_pool2d_backward;
}

#endif
