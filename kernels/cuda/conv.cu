// Conv family on CUDA, NCHW float32, contiguous: conv2d and its two backward kernels, max/avg pooling and
// theirs. Every kernel is in gather form (each output sums what flows into it, in a fixed order), so there are no
// atomics and results are deterministic. conv2d, its input gradient (conv_gemm) and its weight gradient
// (conv2d_backward_weight, over chunks of positions) are implicit GEMMs over shared-memory tiles; the index maths
// are kernels/wgsl/conv.wgsl's.
#include <algorithm>

#include "common.cuh"
#include "kiln/conv_geom.h"

namespace kiln {
namespace cuda {

using Geo = ConvGeom;  // kiln/conv_geom.h, shared with the cpu kernels

// conv2d and its input gradient as implicit GEMMs, one group per blockIdx.z: out[r][col] = sum_k A[r][k] B[k][col].
// Forward: r = o in the group, col = (n, oh, ow), k = (c, i, j) over the group's Cg * kh * kw taps, A the weight
// rows, B the input taps gathered on the fly (a tap in the padding reads 0). Input gradient: r = c in the group,
// col = (n, ih, iw), k = (o, i, j) over Og * kh * kw, A the weight read across output channels, B the output
// gradient at (oh, ow) = ((ih + ph - i dh) / sh, (iw + pw - j dw) / sw) where those divide and land inside (else
// 0). A 64x64 tile of out per 256 threads (4x4 each: rows ty + 16a, columns tx + 16b) over k-steps of 16 staged
// in shared memory; a thread's gathered column stays the same for the whole kernel, so its (n, h, w) is decoded
// once. Each output adds its terms in k order with one FMA each, as the per-output gather kernels did, so the
// bits are theirs (a term in the padding adds 0).
constexpr int kConvTile = 64, kConvK = 16;
template <bool kInput>
__global__ void __launch_bounds__(256) conv_gemm(const float* src, const float* w, float* out, Geo q) {
  __shared__ float sa[kConvK][kConvTile + 4];  // [k][r]
  __shared__ float sb[kConvK][kConvTile + 4];  // [k][col]
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t Cg = q.C / q.groups, Og = q.O / q.groups, grp = blockIdx.z;
  const int64_t khw = q.kh * q.kw, R = kInput ? Cg : Og, K = (kInput ? Og : Cg) * khw;
  const int64_t OH = kInput ? q.H : q.OH, OW = kInput ? q.W : q.OW, P = q.N * OH * OW;  // the columns' maps
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * kConvTile, p0 = static_cast<int64_t>(blockIdx.x) * kConvTile;
  const int pl = threadIdx.x % kConvTile, kr = threadIdx.x / kConvTile;  // the tile column this thread gathers
  const int64_t p = p0 + pl;
  const bool pin = p < P;
  const int64_t cn = pin ? p / (OH * OW) : 0, chh = pin ? (p / OW) % OH : 0, cww = pin ? p % OW : 0;
  const int32_t khw32 = static_cast<int32_t>(khw), kw32 = static_cast<int32_t>(q.kw);  // K < 2^31: 32-bit decode
  float acc[4][4] = {};
  for (int64_t k0 = 0; k0 < K; k0 += kConvK) {
#pragma unroll
    for (int s = 0; s < 4; ++s) {
      const int e = threadIdx.x + s * 256, rl = e / kConvK, kl = e % kConvK;  // A along k
      const int64_t r = r0 + rl, ka = k0 + kl;
      float a = 0.f;
      if (r < R && ka < K) {
        const int32_t k32 = static_cast<int32_t>(ka);
        a = kInput ? w[((grp * Og + k32 / khw32) * Cg + r) * khw + k32 % khw32] : w[(grp * Og + r) * K + ka];
      }
      sa[kl][rl] = a;
      const int kk = kr + 4 * s;  // B along the columns: this thread's column, rows kr, kr + 4, ...
      const int64_t kb = k0 + kk;
      float b = 0.f;
      if (pin && kb < K) {
        const auto [ch, i, j] = conv_tap(static_cast<int32_t>(kb), khw32, kw32);
        if (!kInput) {
          int64_t ih, iw;
          if (q.tap_in(chh, cww, i, j, ih, iw)) b = src[((cn * q.C + grp * Cg + ch) * q.H + ih) * q.W + iw];
        } else {
          const int64_t ah = chh + q.ph - i * q.dh, aw = cww + q.pw - j * q.dw, oh = ah / q.sh, ow = aw / q.sw;
          if (ah >= 0 && oh * q.sh == ah && oh < q.OH && aw >= 0 && ow * q.sw == aw && ow < q.OW)
            b = src[((cn * q.O + grp * Og + ch) * q.OH + oh) * q.OW + ow];
        }
      }
      sb[kk][pl] = b;
    }
    __syncthreads();
    tile_step_4x4(sa, sb, acc, ty, tx, FmaStep{});
    __syncthreads();
  }
  const int64_t ch0 = kInput ? q.C : q.O, g0 = grp * R;  // out is [N, ch0, OH, OW]; this group's first channel
#pragma unroll
  for (int b = 0; b < 4; ++b) {
    const int64_t col = p0 + tx + 16 * b;
    if (col >= P) break;
    const int64_t n = col / (OH * OW), hw = col % (OH * OW);
#pragma unroll
    for (int a = 0; a < 4; ++a) {
      const int64_t r = r0 + ty + 16 * a;
      if (r < R) out[(n * ch0 + g0 + r) * OH * OW + hw] = acc[a][b];
    }
  }
}

// The weight gradient as an implicit GEMM, one (group, chunk) per blockIdx.z: dw[o][t] = sum_p gy[o][p] x[t][p]
// over the output positions p = (n, oh, ow) of a chunk, with o the group's output channels (rows) and t = (c, i, j)
// its Cg * kh * kw taps (columns), x gathered on the fly at (oh sh - ph + i dh, ow sw - pw + j dw) (0 in the
// padding). The same 64x64 tiles and 16-deep k-steps as conv_gemm; a thread's gathered column is a tap, decoded
// once. Each output adds its chunk's terms in position order with one FMA each; with several chunks the partial
// sums go to part[chunk] and sum_splits adds them in chunk order. A block per weight over all positions, before,
// read gy's and x's planes once per weight.
__global__ void __launch_bounds__(256)
    conv2d_backward_weight(const float* x, const float* gy, float* dw, Geo q, int32_t chunks, int32_t chunk_len) {
  __shared__ float sa[kConvK][kConvTile + 4];  // [k][o]
  __shared__ float sb[kConvK][kConvTile + 4];  // [k][tap]
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t Cg = q.C / q.groups, Og = q.O / q.groups;
  const int32_t grp = static_cast<int32_t>(blockIdx.z) / chunks, chunk = static_cast<int32_t>(blockIdx.z) % chunks;
  const int32_t khw = static_cast<int32_t>(q.kh * q.kw), kw = static_cast<int32_t>(q.kw);
  const int32_t taps = static_cast<int32_t>(Cg) * khw;  // < 2^31, checked by the launcher
  const int32_t plane = static_cast<int32_t>(q.OH * q.OW), ow_n = static_cast<int32_t>(q.OW);
  const int32_t P = static_cast<int32_t>(q.N) * plane;  // < 2^31, checked by the launcher
  const int32_t kbeg = chunk * chunk_len,
                kend = static_cast<int32_t>(min(static_cast<int64_t>(P), static_cast<int64_t>(kbeg) + chunk_len));
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * kConvTile;
  const int32_t t0 = static_cast<int32_t>(blockIdx.x) * kConvTile;
  const int tl = threadIdx.x % kConvTile, kr = threadIdx.x / kConvTile;  // the tile column (tap) this thread gathers
  const int32_t tap = t0 + tl;
  const bool tin = tap < taps;
  const ConvTap tp = conv_tap(tin ? tap : 0, khw, kw);
  const int64_t xc = grp * Cg + tp.ch;  // the input channel of this thread's tap
  float acc[4][4] = {};
  for (int32_t k0 = kbeg; k0 < kend; k0 += kConvK) {
#pragma unroll
    for (int s = 0; s < 4; ++s) {
      const int e = threadIdx.x + s * 256, rl = e / kConvK, kl = e % kConvK;  // A = gy along the positions
      const int64_t r = r0 + rl;
      const int32_t ka = k0 + kl;
      float a = 0.f;
      if (r < Og && ka < kend) {
        const int32_t n = ka / plane;
        a = gy[(static_cast<int64_t>(n) * q.O + grp * Og + r) * plane + (ka - n * plane)];
      }
      sa[kl][rl] = a;
      const int kk = kr + 4 * s;  // B = x at this thread's tap, positions kr, kr + 4, ...
      const int32_t kb = k0 + kk;
      float b = 0.f;
      if (tin && kb < kend) {
        const int32_t n = kb / plane, hw = kb - n * plane, oh = hw / ow_n;
        int64_t ih, iw;
        if (q.tap_in(oh, hw - oh * ow_n, tp.i, tp.j, ih, iw)) b = x[((n * q.C + xc) * q.H + ih) * q.W + iw];
      }
      sb[kk][tl] = b;
    }
    __syncthreads();
    tile_step_4x4(sa, sb, acc, ty, tx, FmaStep{});
    __syncthreads();
  }
  float* out = dw + static_cast<int64_t>(chunks > 1 ? chunk : 0) * q.O * taps;  // [O][Cg * kh * kw] per chunk
#pragma unroll
  for (int b = 0; b < 4; ++b) {
    const int32_t col = t0 + tx + 16 * b;
    if (col >= taps) break;
#pragma unroll
    for (int a = 0; a < 4; ++a) {
      const int64_t r = r0 + ty + 16 * a;
      if (r < Og) out[(grp * Og + r) * taps + col] = acc[a][b];
    }
  }
}

// pooling: N holds N*C planes
__device__ inline int64_t window_count(int64_t oh, int64_t ow, const Geo& q) {
  const int64_t h0 = max(oh * q.sh - q.ph, int64_t{0}), h1 = min(oh * q.sh - q.ph + q.kh, q.H);
  const int64_t w0 = max(ow * q.sw - q.pw, int64_t{0}), w1 = min(ow * q.sw - q.pw + q.kw, q.W);
  return max(h1 - h0, int64_t{0}) * max(w1 - w0, int64_t{0});
}
__device__ inline int64_t window_div(int64_t oh, int64_t ow, const Geo& q) {
  return q.include_pad ? q.kh * q.kw : window_count(oh, ow, q);
}

/** Window (plane, oh, ow): its max (NaN if any tap is NaN) and the flat index of the first max (or first NaN). */
__device__ inline float window_max(const float* x, int64_t plane, int64_t oh, int64_t ow, const Geo& q, int64_t* arg) {
  float m = -INFINITY;
  int64_t best = -1;
  for (int64_t i = 0; i < q.kh; ++i) {
    const int64_t ih = oh * q.sh - q.ph + i;
    if (ih < 0 || ih >= q.H) continue;
    for (int64_t j = 0; j < q.kw; ++j) {
      const int64_t iw = ow * q.sw - q.pw + j;
      if (iw < 0 || iw >= q.W) continue;
      const int64_t t = (plane * q.H + ih) * q.W + iw;
      const float v = x[t];
      if (max_pool_takes(v, m, best < 0)) {
        m = v;
        best = t;
      }
    }
  }
  if (arg) *arg = best;
  return m;
}

__global__ void pool2d(const float* x, float* y, Geo q, bool maxp) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= q.N * q.OH * q.OW) return;
  const int64_t plane = t / (q.OH * q.OW), oh = (t / q.OW) % q.OH, ow = t % q.OW;
  if (maxp) {
    y[t] = window_max(x, plane, oh, ow, q, nullptr);
    return;
  }
  float s = 0.f;
  for (int64_t i = 0; i < q.kh; ++i) {
    const int64_t ih = oh * q.sh - q.ph + i;
    if (ih < 0 || ih >= q.H) continue;
    for (int64_t j = 0; j < q.kw; ++j) {
      const int64_t iw = ow * q.sw - q.pw + j;
      if (iw >= 0 && iw < q.W) s += x[(plane * q.H + ih) * q.W + iw];
    }
  }
  const int64_t div = window_div(oh, ow, q);
  y[t] = div > 0 ? s / static_cast<float>(div) : 0.f;
}

__device__ inline int64_t first_out(int64_t x, int64_t p, int64_t k, int64_t s) {
  const int64_t a = x + p - k + s;
  return a <= 0 ? 0 : a / s;
}

// each max pooling window's argmax (window_max's flat index; -1 for a window wholly in the padding): the backward
// compares it instead of searching every window an input is in (kh*kw reads a window)
__global__ void pool2d_argmax(const float* x, int64_t* arg, Geo q) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= q.N * q.OH * q.OW) return;
  window_max(x, t / (q.OH * q.OW), (t / q.OW) % q.OH, t % q.OW, q, arg + t);
}

// max: arg = the windows' argmax (pool2d_argmax), gy = output gradient; avg: gy only
__global__ void pool2d_backward(const int64_t* arg, const float* gy, float* dx, Geo q, bool maxp) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= q.N * q.H * q.W) return;
  const int64_t plane = t / (q.H * q.W), ih = (t / q.W) % q.H, iw = t % q.W;
  float acc = 0.f;
  for (int64_t oh = first_out(ih, q.ph, q.kh, q.sh); oh < q.OH && oh * q.sh - q.ph <= ih; ++oh)
    for (int64_t ow = first_out(iw, q.pw, q.kw, q.sw); ow < q.OW && ow * q.sw - q.pw <= iw; ++ow) {
      const int64_t o = (plane * q.OH + oh) * q.OW + ow;
      if (maxp) {
        if (arg[o] == t) acc += gy[o];
      } else {
        const int64_t div = window_div(oh, ow, q);
        if (div > 0) acc += gy[o] / static_cast<float>(div);
      }
    }
  dx[t] = acc;
}

static bool f32c(const TensorView& v, int nd) { return v.dtype == DT_FLOAT32 && v.ndim == nd && v.contiguous(); }

static Status conv_geo(const TensorView& x4, const TensorView& w4, const TensorView& y4, const double* a, Geo& q,
                       const char* name) {
  KILN_REQUIRE(f32c(x4, 4) && f32c(w4, 4) && f32c(y4, 4), ST_SHAPE, name, " takes contiguous float32 NCHW tensors");
  if (Status s = read_conv_attrs(a, q, name); !s.good()) return s;
  q.N = x4.shape[0];
  q.C = x4.shape[1];
  q.H = x4.shape[2];
  q.W = x4.shape[3];
  q.O = w4.shape[0];
  q.kh = w4.shape[2];
  q.kw = w4.shape[3];
  q.OH = y4.shape[2];
  q.OW = y4.shape[3];
  KILN_REQUIRE(q.C % q.groups == 0 && q.O % q.groups == 0 && w4.shape[1] == q.C / q.groups && y4.shape[0] == q.N &&
                   y4.shape[1] == q.O,
               ST_SHAPE, name, ": inconsistent geometry x ", shape_str(x4), " w ", shape_str(w4), " y ", shape_str(y4));
  KILN_REQUIRE(q.OH == conv_out_size(q.H, q.kh, q.sh, q.ph, q.dh) && q.OW == conv_out_size(q.W, q.kw, q.sw, q.pw, q.dw),
               ST_SHAPE, name, ": output ", shape_str(y4), " does not match the geometry");
  return Status::ok();
}

/** conv_gemm over (columns, rows, groups) tiles: src is x (forward) or gy (input gradient). */
template <bool kInput>
static Status launch_conv_gemm(const float* src, const float* w, float* out, const Geo& q, const char* name) {
  const int64_t rows = kInput ? q.C / q.groups : q.O / q.groups;
  const int64_t cols = q.N * (kInput ? q.H * q.W : q.OH * q.OW);
  const int64_t gx = (cols + kConvTile - 1) / kConvTile, gy = (rows + kConvTile - 1) / kConvTile;
  const int64_t taps = (kInput ? q.O : q.C) / q.groups * q.kh * q.kw;  // decoded in 32 bits in the kernel
  KILN_REQUIRE(gx <= 2147483647 && gy <= 65535 && q.groups <= 65535 && taps <= 2147483647, ST_SHAPE, name, ": ", cols,
               " positions, ", rows, " channels a group, ", taps, " taps an output and ", q.groups,
               " groups exceed one grid");
  const dim3 grid(static_cast<unsigned>(gx), static_cast<unsigned>(gy), static_cast<unsigned>(q.groups));
  conv_gemm<kInput><<<grid, 256, 0, stream()>>>(src, w, out, q);
  return launched(name);
}

static Status k_conv2d(const TensorView* in, int nin, const TensorView& out, const double* a) {
  KILN_REQUIRE(nin == 2, ST_ARG, "conv2d takes (x, w)");
  Geo q;
  if (Status s = conv_geo(in[0], in[1], out, a, q, "conv2d"); !s.good()) return s;
  if (out.numel() == 0) return Status::ok();
  return launch_conv_gemm<false>(in[0].ptr<float>(), in[1].ptr<float>(), out.ptr<float>(), q, "conv2d");
}
static Status k_conv2d_backward_input(const TensorView* in, int nin, const TensorView& out, const double* a) {
  KILN_REQUIRE(nin == 2, ST_ARG, "conv2dBackwardInput takes (gy, w)");
  Geo q;
  if (Status s = conv_geo(out, in[1], in[0], a, q, "conv2dBackwardInput"); !s.good()) return s;
  if (out.numel() == 0) return Status::ok();
  return launch_conv_gemm<true>(in[0].ptr<float>(), in[1].ptr<float>(), out.ptr<float>(), q, "conv2dBackwardInput");
}
// The weight gradient's positions are cut into chunks when its tiles are too few to fill a GPU: enough chunks for
// about kConvWBlocks blocks, each at least kConvWMinChunk positions (a multiple of kConvK). The rule reads only the
// shape, so the bits never depend on the GPU.
constexpr int64_t kConvWBlocks = 1024, kConvWMinChunk = 512;
/** How many chunks the weight gradient cuts its P positions into, for `tiles` output tiles; len = each chunk's. */
inline int64_t conv_wgrad_chunks(int64_t tiles, int64_t P, int64_t* len) {
  int64_t chunks = (kConvWBlocks + tiles - 1) / tiles;
  chunks = std::max<int64_t>(1, std::min(chunks, P / kConvWMinChunk));
  *len = ((P + chunks - 1) / chunks + kConvK - 1) / kConvK * kConvK;
  return (P + *len - 1) / *len;
}

static Status k_conv2d_backward_weight(const TensorView* in, int nin, const TensorView& out, const double* a) {
  KILN_REQUIRE(nin == 2, ST_ARG, "conv2dBackwardWeight takes (x, gy)");
  Geo q;
  if (Status s = conv_geo(in[0], out, in[1], a, q, "conv2dBackwardWeight"); !s.good()) return s;
  const int64_t n = out.numel();
  if (n == 0) return Status::ok();
  const int64_t Og = q.O / q.groups, taps = q.C / q.groups * q.kh * q.kw, P = q.N * q.OH * q.OW;
  if (P == 0)
    return check(cudaMemsetAsync(out.ptr<float>(), 0, static_cast<size_t>(n) * sizeof(float), stream()),
                 "conv2dBackwardWeight zero fill");
  const int64_t gx = (taps + kConvTile - 1) / kConvTile, gy = (Og + kConvTile - 1) / kConvTile;
  const int64_t tiles = gx * gy * q.groups;
  int64_t len = 0;
  const int64_t chunks = conv_wgrad_chunks(tiles, P, &len);
  KILN_REQUIRE(P <= 2147483647 - kConvTile && taps <= 2147483647 && gx <= 2147483647 && gy <= 65535 &&
                   q.groups * chunks <= 65535,
               ST_SHAPE, "conv2dBackwardWeight: ", P, " positions, ", taps, " taps a channel and ", q.groups,
               " groups exceed one grid");
  const dim3 grid(static_cast<unsigned>(gx), static_cast<unsigned>(gy), static_cast<unsigned>(q.groups * chunks));
  if (chunks == 1) {
    conv2d_backward_weight<<<grid, 256, 0, stream()>>>(in[0].ptr<float>(), in[1].ptr<float>(), out.ptr<float>(), q, 1,
                                                       static_cast<int32_t>(len));
    return launched("conv2dBackwardWeight");
  }
  void* part = nullptr;
  const uint64_t bytes = static_cast<uint64_t>(chunks * n) * sizeof(float);
  if (Status s = scratch(bytes, &part); !s.good()) return s;
  conv2d_backward_weight<<<grid, 256, 0, stream()>>>(in[0].ptr<float>(), in[1].ptr<float>(), static_cast<float*>(part),
                                                     q, static_cast<int32_t>(chunks), static_cast<int32_t>(len));
  Status st = launched("conv2dBackwardWeight");
  if (st.good()) {
    sum_splits<<<blocks_for(n), kThreads, 0, stream()>>>(static_cast<const float*>(part), out.ptr<float>(), n,
                                                         static_cast<int32_t>(chunks));
    st = launched("conv2dBackwardWeight");
  }
  release_scratch(part, bytes);
  return st;
}

/** Pooling geometry from (kernel, stride, pad) attrs: x is the input [N, C, H, W], y the output (or its gradient). */
static Status pool_geo(const TensorView& x, const TensorView& y, const double* a, bool include_pad, Geo& q,
                       const char* name) {
  KILN_REQUIRE(f32c(x, 4) && f32c(y, 4) && x.shape[0] == y.shape[0] && x.shape[1] == y.shape[1], ST_SHAPE, name,
               " takes contiguous float32 NCHW tensors");
  if (Status s = read_pool_attrs(a, q, name); !s.good()) return s;
  q.N = x.shape[0] * x.shape[1];  // N*C planes
  q.C = q.O = 1;
  q.H = x.shape[2];
  q.W = x.shape[3];
  q.OH = y.shape[2];
  q.OW = y.shape[3];
  q.include_pad = include_pad;
  KILN_REQUIRE(q.OH == conv_out_size(q.H, q.kh, q.sh, q.ph, 1) && q.OW == conv_out_size(q.W, q.kw, q.sw, q.pw, 1),
               ST_SHAPE, name, ": output ", shape_str(y), " does not match the geometry");
  return Status::ok();
}

static Status k_max_pool2d(const TensorView* in, int nin, const TensorView& out, const double* a) {
  KILN_REQUIRE(nin == 1, ST_ARG, "maxPool2d takes x");
  Geo q;
  if (Status s = pool_geo(in[0], out, a, false, q, "maxPool2d"); !s.good()) return s;
  if (out.numel() == 0) return Status::ok();
  pool2d<<<blocks_for(out.numel()), kThreads, 0, stream()>>>(in[0].ptr<float>(), out.ptr<float>(), q, true);
  return launched("maxPool2d");
}
static Status k_max_pool2d_backward(const TensorView* in, int nin, const TensorView& out, const double* a) {
  KILN_REQUIRE(nin == 2 && same_shape(in[0], out), ST_ARG, "maxPool2dBackward takes (x, gy) and writes dx like x");
  Geo q;
  if (Status s = pool_geo(in[0], in[1], a, false, q, "maxPool2dBackward"); !s.good()) return s;
  if (out.numel() == 0) return Status::ok();
  const int64_t windows = in[1].numel();
  const uint64_t bytes = static_cast<uint64_t>(std::max<int64_t>(windows, 1)) * sizeof(int64_t);
  void* arg = nullptr;
  if (Status s = scratch(bytes, &arg); !s.good()) return s;
  Status st = Status::ok();
  if (windows > 0) {
    pool2d_argmax<<<blocks_for(windows), kThreads, 0, stream()>>>(in[0].ptr<float>(), static_cast<int64_t*>(arg), q);
    st = launched("maxPool2dBackward");
  }
  if (st.good()) {
    pool2d_backward<<<blocks_for(out.numel()), kThreads, 0, stream()>>>(static_cast<const int64_t*>(arg),
                                                                        in[1].ptr<float>(), out.ptr<float>(), q, true);
    st = launched("maxPool2dBackward");
  }
  release_scratch(arg, bytes);
  return st;
}
static Status k_avg_pool2d(const TensorView* in, int nin, const TensorView& out, const double* a) {
  KILN_REQUIRE(nin == 1, ST_ARG, "avgPool2d takes x");
  Geo q;
  if (Status s = pool_geo(in[0], out, a, a[ATTR_AVG_POOL2D_COUNT_INCLUDE_PAD] != 0, q, "avgPool2d"); !s.good())
    return s;
  if (out.numel() == 0) return Status::ok();
  pool2d<<<blocks_for(out.numel()), kThreads, 0, stream()>>>(in[0].ptr<float>(), out.ptr<float>(), q, false);
  return launched("avgPool2d");
}
static Status k_avg_pool2d_backward(const TensorView* in, int nin, const TensorView& out, const double* a) {
  KILN_REQUIRE(nin == 1 && out.ndim == 4 && a[ATTR_AVG_POOL2D_BACKWARD_IN_H] == out.shape[2] &&
                   a[ATTR_AVG_POOL2D_BACKWARD_IN_W] == out.shape[3],
               ST_ARG, "avgPool2dBackward takes gy and writes [N, C, inH, inW]");
  Geo q;
  if (Status s = pool_geo(out, in[0], a, a[ATTR_AVG_POOL2D_BACKWARD_COUNT_INCLUDE_PAD] != 0, q, "avgPool2dBackward");
      !s.good())
    return s;
  if (out.numel() == 0) return Status::ok();
  pool2d_backward<<<blocks_for(out.numel()), kThreads, 0, stream()>>>(nullptr, in[0].ptr<float>(), out.ptr<float>(), q,
                                                                      false);
  return launched("avgPool2dBackward");
}

void register_conv(KernelTable& t) {
  t.fn[OP_CONV2D] = k_conv2d;
  t.fn[OP_CONV2D_BACKWARD_INPUT] = k_conv2d_backward_input;
  t.fn[OP_CONV2D_BACKWARD_WEIGHT] = k_conv2d_backward_weight;
  t.fn[OP_MAX_POOL2D] = k_max_pool2d;
  t.fn[OP_MAX_POOL2D_BACKWARD] = k_max_pool2d_backward;
  t.fn[OP_AVG_POOL2D] = k_avg_pool2d;
  t.fn[OP_AVG_POOL2D_BACKWARD] = k_avg_pool2d_backward;
}

}  // namespace cuda
}  // namespace kiln
