// Quant family on CUDA. int8 linear: x rows are quantized to uint8 on the device (per row from the range, or
// with the calibrated scale and zero point; round half to even), then each output is an exact int32 sum of
// u8 x s8 products, four at a time with dp4a, dequantized in float: for a few rows of x a warp per output reads its
// weight row in consecutive words; for more, 64x64 tiles of y per block over codes and weights staged in shared
// memory (4x4 outputs a thread), with the weights' row sums (for the zero point) from a first pass. The sums are
// exact integers either way, so every path gives the same bits. int4 weight-only linear: for a few rows of x
// a warp per output dequantizes its packed weight row in registers; for more, the weight is dequantized
// (nibble - 8) * scale into device scratch and multiplied with the float32 GEMM as x W^T.
// int8 convolution: each image is quantized as one row (quantize_rows over [N, C*H*W]), then an implicit GEMM in
// 64x64 tiles sums (code - zero) * w over each output's in-bounds taps (padding stands for 0), exact in int32,
// dequantized in float (ReLU'd in the kernel when asked); a max pool, when asked, is a second pass over that map.
// Layouts: native/include/kiln/int4_layout.h.
#include "common.cuh"
#include "kiln/conv_geom.h"
#include "kiln/int4_layout.h"

namespace kiln {
namespace cuda {

Status gemm_abt(const float* A, const float* W, float* C, int64_t M, int64_t N, int64_t K);

__global__ void quantize_rows(const float* x, uint8_t* q, float* scale, int32_t* zero, int64_t M, int64_t K, int64_t Kp,
                              float sx, int32_t zx, DeviceFlags* f) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= M) return;
  const float* xr = x + i * K;
  float mn = 0.f, mx = 0.f;
  for (int64_t k = 0; k < K; ++k) {
    const float v = xr[k];
    if (!isfinite(v)) report(f, FLAG_QUANT_NAN, i * K + k, 0, 0);
    mn = fminf(mn, v);
    mx = fmaxf(mx, v);
  }
  float s = sx;
  int32_t z = zx;
  if (sx == 0.f) {
    const float range = mx - mn;
    if (range == 0.f) {
      s = 1.f;
      z = 0;
    } else {
      s = range / 255.f;
      z = static_cast<int32_t>(fminf(255.f, fmaxf(0.f, rintf(-mn / s))));
    }
  }
  const float inv = 1.f / s;
  for (int64_t k = 0; k < Kp; ++k) {
    const float v = k < K ? rintf(xr[k] * inv) + static_cast<float>(z) : static_cast<float>(z);  // padding quantizes 0
    q[i * Kp + k] = static_cast<uint8_t>(fminf(255.f, fmaxf(0.f, v)));
  }
  scale[i] = s;
  zero[i] = z;
}

// u8 codes by s8 weights, four pairs a word: PTX has the mixed-sign dp4a that the intrinsics lack
__device__ inline int32_t dp4a_us(uint32_t a, int32_t b, int32_t c) {
  int32_t d;
  asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}

// weights k..k+3 of a row of K as one word, zero past K: a word load where the weight allows (w4: K % 4 == 0 and
// the weight 4-byte aligned), else bytes
__device__ inline int32_t weight_word(const int8_t* wr, int64_t k, int64_t K, bool w4) {
  if (w4) return *reinterpret_cast<const int32_t*>(wr + k);
  uint32_t v = 0;
  for (int b = 0; b < 4; ++b)
    if (k + b < K) v |= static_cast<uint32_t>(static_cast<uint8_t>(wr[k + b])) << (8 * b);
  return static_cast<int32_t>(v);
}

// y = (q . w - zero * sum(w)) * (scale * ws) + bias: the one dequantization every path uses
__device__ inline float dequant_dot(int32_t dot, int32_t wsum, int32_t zero, float scale, float ws, const float* bias,
                                    int64_t j) {
  return static_cast<float>(dot - zero * wsum) * (scale * ws) + (bias ? bias[j] : 0.f);
}

// Few rows of x (M <= kInt8FewRows): a warp per output column j, the lanes reading the weight row in consecutive
// words (codes rows are Kp = K rounded up to 4 apart in 4-byte aligned scratch), the rows' sums added by shuffles.
constexpr int64_t kInt8FewRows = 8;
__global__ void qlinear_int8_rows(const uint8_t* q, const float* scale, const int32_t* zero, const int8_t* w,
                                  const float* ws, const float* bias, float* y, int64_t M, int64_t N, int64_t K,
                                  int64_t Kp, bool w4) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * (kThreads / 32) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (j >= N) return;  // a whole warp leaves together
  const int8_t* wr = w + j * K;
  int32_t acc[kInt8FewRows] = {}, wsum = 0;
  for (int64_t u = lane; 4 * u < K; u += 32) {
    const int32_t b = weight_word(wr, 4 * u, K, w4);
    wsum = __dp4a(0x01010101, b, wsum);
#pragma unroll
    for (int m = 0; m < kInt8FewRows; ++m)
      if (m < M) acc[m] = dp4a_us(reinterpret_cast<const uint32_t*>(q + m * Kp)[u], b, acc[m]);
  }
  wsum = warp_all(wsum, SumOp{});
#pragma unroll
  for (int m = 0; m < kInt8FewRows; ++m) {
    if (m >= M) break;
    const int32_t dot = warp_all(acc[m], SumOp{});
    if (lane == 0) y[m * N + j] = dequant_dot(dot, wsum, zero[m], scale[m], ws[j], bias, j);
  }
}

// Each weight row's sum, a warp per row (the tiled kernel's zero-point term).
__global__ void weight_sums(const int8_t* w, int32_t* wsum, int64_t N, int64_t K, bool w4) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * (kThreads / 32) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (j >= N) return;
  int32_t s = 0;
  for (int64_t u = lane; 4 * u < K; u += 32) s = __dp4a(0x01010101, weight_word(w + j * K, 4 * u, K, w4), s);
  s = warp_all(s, SumOp{});
  if (lane == 0) wsum[j] = s;
}

// More rows: a 64x64 tile of y per 256 threads (16x16, each 4x4 outputs: rows ty + 16i, columns tx + 16j), over
// K in steps of 16 words. Codes and weights are staged as words in shared memory, rows padded to 17 words so a
// warp's reads of 16 weight rows fall in 16 banks.
constexpr int kQTile = 64, kQWords = 16;
__global__ void __launch_bounds__(256)
    qlinear_int8(const uint8_t* q, const float* scale, const int32_t* zero, const int8_t* w, const int32_t* wsum,
                 const float* ws, const float* bias, float* y, int64_t M, int64_t N, int64_t K, int64_t Kp, bool w4) {
  __shared__ uint32_t sq[kQTile][kQWords + 1];
  __shared__ int32_t sw[kQTile][kQWords + 1];
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * kQTile, n0 = static_cast<int64_t>(blockIdx.x) * kQTile;
  const int64_t KW = Kp / 4;  // words of a code row
  int32_t acc[4][4] = {};
  for (int64_t u0 = 0; u0 < KW; u0 += kQWords) {
#pragma unroll
    for (int r = 0; r < kQTile * kQWords / 256; ++r) {
      const int e = threadIdx.x + r * 256, row = e / kQWords, c = e % kQWords;  // a warp: 2 rows of 16 words
      const int64_t u = u0 + c;
      sq[row][c] = m0 + row < M && u < KW ? reinterpret_cast<const uint32_t*>(q + (m0 + row) * Kp)[u] : 0u;
      sw[row][c] = n0 + row < N && u < KW ? weight_word(w + (n0 + row) * K, 4 * u, K, w4) : 0;
    }
    __syncthreads();
#pragma unroll
    for (int c = 0; c < kQWords; ++c) {
      uint32_t a[4];
      int32_t b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        a[i] = sq[ty + 16 * i][c];
        b[i] = sw[tx + 16 * i][c];
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = dp4a_us(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t m = m0 + ty + 16 * i;
    if (m >= M) break;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t n = n0 + tx + 16 * j;
      if (n < N) y[m * N + n] = dequant_dot(acc[i][j], wsum[n], zero[m], scale[m], ws[n], bias, n);
    }
  }
}

static Status k_qlinear_int8(const TensorView* in, int nin, const TensorView& out, const double* at) {
  KILN_REQUIRE(nin == 3 || nin == 4, ST_ARG, "qlinearInt8 takes (x, wq, wscale[, bias]), got ", nin, " inputs");
  const TensorView &x = in[0], &w = in[1], &ws = in[2];
  KILN_REQUIRE(
      x.dtype == DT_FLOAT32 && x.ndim == 2 && x.contiguous() && w.dtype == DT_INT8 && w.ndim == 2 && w.contiguous(),
      ST_DTYPE, "qlinearInt8 takes contiguous float32 x [M, K] and int8 wq [N, K]");
  const int64_t M = x.shape[0], K = x.shape[1], N = w.shape[0];
  KILN_REQUIRE(w.shape[1] == K && K <= 65536, ST_SHAPE, "qlinearInt8: x ", shape_str(x), " and wq ", shape_str(w),
               " must share K <= 65536");
  KILN_REQUIRE(ws.dtype == DT_FLOAT32 && ws.contiguous() && ws.numel() == N, ST_SHAPE,
               "qlinearInt8: wscale must be float32 [", N, "]");
  const float* bias = nullptr;
  if (nin == 4) {
    KILN_REQUIRE(in[3].dtype == DT_FLOAT32 && in[3].contiguous() && in[3].numel() == N, ST_SHAPE,
                 "qlinearInt8: bias must be float32 [", N, "]");
    bias = in[3].ptr<float>();
  }
  KILN_REQUIRE(out.dtype == DT_FLOAT32 && out.numel() == M * N, ST_SHAPE, "qlinearInt8 writes float32 [", M, ", ", N,
               "]");
  const double sx = at[ATTR_QLINEAR_INT8_X_SCALE], zx = at[ATTR_QLINEAR_INT8_X_ZERO];
  KILN_REQUIRE(sx >= 0 && zx >= 0 && zx <= 255 && zx == static_cast<double>(static_cast<int>(zx)) &&
                   (sx == 0 || static_cast<float>(sx) > 0.f),
               ST_ARG, "qlinearInt8: xScale must be >= 0 (0 = dynamic per row) and xZero an integer in [0, 255], got ",
               sx, " and ", zx);
  if (M * N == 0) return Status::ok();
  KILN_REQUIRE((M + kQTile - 1) / kQTile <= 65535, ST_SHAPE, "qlinearInt8: ", M, " rows exceed one grid (at most ",
               65535 * kQTile, ")");
  const int64_t Kp = (K + 3) / 4 * 4;
  const bool few = M <= kInt8FewRows;
  const uint64_t bytes = static_cast<uint64_t>(M) * Kp + static_cast<uint64_t>(M) * 8 + (few ? 0 : 4 * N);
  void* work = nullptr;
  if (Status s = scratch(bytes, &work); !s.good()) return s;
  uint8_t* q = static_cast<uint8_t*>(work);
  float* scale = reinterpret_cast<float*>(q + M * Kp);
  int32_t* zero = reinterpret_cast<int32_t*>(scale + M);
  int32_t* wsum = zero + M;
  const bool w4 = K % 4 == 0 && reinterpret_cast<uintptr_t>(w.ptr<int8_t>()) % 4 == 0;
  quantize_rows<<<blocks_for(M), kThreads, 0, stream()>>>(
      x.ptr<float>(), q, scale, zero, M, K, Kp, static_cast<float>(sx), static_cast<int32_t>(zx), device_flags());
  Status st = launched("qlinearInt8 (quantize)");
  if (st.good() && few) {
    qlinear_int8_rows<<<blocks_for(N * 32), kThreads, 0, stream()>>>(q, scale, zero, w.ptr<int8_t>(), ws.ptr<float>(),
                                                                     bias, out.ptr<float>(), M, N, K, Kp, w4);
    st = launched("qlinearInt8");
  } else if (st.good()) {
    weight_sums<<<blocks_for(N * 32), kThreads, 0, stream()>>>(w.ptr<int8_t>(), wsum, N, K, w4);
    st = launched("qlinearInt8 (weight sums)");
    const dim3 grid(static_cast<unsigned>((N + kQTile - 1) / kQTile), static_cast<unsigned>((M + kQTile - 1) / kQTile));
    if (st.good()) {
      qlinear_int8<<<grid, 256, 0, stream()>>>(q, scale, zero, w.ptr<int8_t>(), wsum, ws.ptr<float>(), bias,
                                               out.ptr<float>(), M, N, K, Kp, w4);
      st = launched("qlinearInt8");
    }
  }
  release_scratch(work, bytes);
  return st;
}

// The int8 convolution as an implicit GEMM, as conv.cu's conv_gemm: acc[o][col] = sum_k w[o][k] (code - zero)[k][col]
// with col = (n, oh, ow) and k = (c, i, j), the codes gathered on the fly (a tap in the padding stands for 0),
// exact in int32 so the order does not matter. A 64x64 tile per 256 threads (4x4 each) over k-steps of 16 in
// shared memory. Each output leaves as acc * (scale[n] ws[o]) + bias[o], ReLU'd when relu: the result itself, or
// (pool > 1) the conv map that qconv_pool then pools, as qconv_window does.
constexpr int kQConvTile = 64, kQConvK = 16;
__global__ void __launch_bounds__(256)
    qconv_gemm(const uint8_t* q, const float* scale, const int32_t* zero, const int8_t* w, const float* ws,
               const float* bias, float* y, ConvGeom g, bool relu) {
  __shared__ int32_t sa[kQConvK][kQConvTile + 1];  // [k][o]
  __shared__ int32_t sb[kQConvK][kQConvTile + 1];  // [k][col]
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t K = g.C * g.kh * g.kw, P = g.N * g.OH * g.OW;
  const int32_t khw = static_cast<int32_t>(g.kh * g.kw), kw = static_cast<int32_t>(g.kw);  // K < 2^31
  const int64_t o0 = static_cast<int64_t>(blockIdx.y) * kQConvTile, p0 = static_cast<int64_t>(blockIdx.x) * kQConvTile;
  const int pl = threadIdx.x % kQConvTile, kr = threadIdx.x / kQConvTile;  // the column this thread gathers
  const int64_t p = p0 + pl;
  const bool pin = p < P;
  const int64_t cn = pin ? p / (g.OH * g.OW) : 0, chh = pin ? (p / g.OW) % g.OH : 0, cww = pin ? p % g.OW : 0;
  const uint8_t* xi = q + cn * g.C * g.H * g.W;
  const int32_t z = pin ? zero[cn] : 0;
  int32_t acc[4][4] = {};
  for (int64_t k0 = 0; k0 < K; k0 += kQConvK) {
#pragma unroll
    for (int s = 0; s < 4; ++s) {
      const int e = threadIdx.x + s * 256, ol = e / kQConvK, kl = e % kQConvK;  // weights along k
      sa[kl][ol] = o0 + ol < g.O && k0 + kl < K ? static_cast<int32_t>(w[(o0 + ol) * K + k0 + kl]) : 0;
      const int kk = kr + 4 * s;
      const int64_t kb = k0 + kk;
      int32_t v = 0;
      if (pin && kb < K) {
        const auto [c, i, j] = conv_tap(static_cast<int32_t>(kb), khw, kw);
        int64_t ih, iw;
        if (g.tap_in(chh, cww, i, j, ih, iw)) v = static_cast<int32_t>(xi[(c * g.H + ih) * g.W + iw]) - z;
      }
      sb[kk][pl] = v;
    }
    __syncthreads();
    tile_step_4x4(sa, sb, acc, ty, tx, [](int32_t s, int32_t a, int32_t b) { return s + a * b; });
    __syncthreads();
  }
#pragma unroll
  for (int b = 0; b < 4; ++b) {
    const int64_t col = p0 + tx + 16 * b;
    if (col >= P) break;
    const int64_t n = col / (g.OH * g.OW), hw = col % (g.OH * g.OW);
#pragma unroll
    for (int a = 0; a < 4; ++a) {
      const int64_t o = o0 + ty + 16 * a;
      if (o >= g.O) continue;
      float v = static_cast<float>(acc[a][b]) * (scale[n] * ws[o]) + (bias ? bias[o] : 0.f);
      if (relu && v < 0.f) v = 0.f;
      y[(n * g.O + o) * g.OH * g.OW + hw] = v;
    }
  }
}

// The max of each pool x pool window of the conv map t [N, O, OH, OW] by max_pool_takes' rule (qconv_window's).
__global__ void qconv_pool(const float* t, float* y, ConvGeom g, int64_t pool) {
  const int64_t u = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t PH = g.OH / pool, PW = g.OW / pool;
  if (u >= g.N * g.O * PH * PW) return;
  const int64_t pc = u % PW, pr = (u / PW) % PH, plane = u / (PW * PH);
  float m = 0.f;
  for (int64_t i = 0; i < pool; ++i)
    for (int64_t j = 0; j < pool; ++j) {
      const float v = t[(plane * g.OH + pr * pool + i) * g.OW + pc * pool + j];
      if (max_pool_takes(v, m, i == 0 && j == 0)) m = v;
    }
  y[u] = m;
}

static Status k_qconv2d_int8(const TensorView* in, int nin, const TensorView& out, const double* at) {
  ConvGeom g;
  float sx = 0.f;
  int32_t zx = 0;
  const float* bias = nullptr;
  bool relu = false;
  int64_t pool = 1;
  if (Status s = read_qconv(in, nin, out, at, g, sx, zx, bias, relu, pool); !s.good()) return s;
  if (g.N * g.O == 0) return Status::ok();
  const int64_t K = g.C * g.H * g.W, taps = g.C * g.kh * g.kw, cols = g.N * g.OH * g.OW;
  const int64_t gx = (cols + kQConvTile - 1) / kQConvTile, gy = (g.O + kQConvTile - 1) / kQConvTile;
  KILN_REQUIRE(taps <= 2147483647 && gx <= 2147483647 && gy <= 65535, ST_SHAPE, "qconv2dInt8: ", cols, " positions, ",
               g.O, " channels and ", taps, " taps an output exceed one grid");
  if (cols == 0) return Status::ok();
  // the conv map before pooling, when there is a pool: after the codes, scales and zero points
  const uint64_t head = (static_cast<uint64_t>(g.N) * K + 3) / 4 * 4 + static_cast<uint64_t>(g.N) * 8;
  const uint64_t bytes = head + (pool > 1 ? static_cast<uint64_t>(g.N * g.O * g.OH * g.OW) * 4 : 0) + 8;
  void* work = nullptr;
  if (Status s = scratch(bytes, &work); !s.good()) return s;
  uint8_t* q = static_cast<uint8_t*>(work);
  // the scales and zero points after the codes, 4-byte aligned
  float* scale = reinterpret_cast<float*>(q + (g.N * K + 3) / 4 * 4);
  int32_t* zero = reinterpret_cast<int32_t*>(scale + g.N);
  quantize_rows<<<blocks_for(g.N), kThreads, 0, stream()>>>(in[0].ptr<float>(), q, scale, zero, g.N, K, K, sx, zx,
                                                            device_flags());
  Status st = launched("qconv2dInt8 (quantize)");
  float* map = pool > 1 ? reinterpret_cast<float*>(q + head) : out.ptr<float>();
  if (st.good()) {
    const dim3 grid(static_cast<unsigned>(gx), static_cast<unsigned>(gy));
    qconv_gemm<<<grid, 256, 0, stream()>>>(q, scale, zero, in[1].ptr<int8_t>(), in[2].ptr<float>(), bias, map, g, relu);
    st = launched("qconv2dInt8");
  }
  if (st.good() && pool > 1 && out.numel() > 0) {
    qconv_pool<<<blocks_for(out.numel()), kThreads, 0, stream()>>>(map, out.ptr<float>(), g, pool);
    st = launched("qconv2dInt8 (pool)");
  }
  release_scratch(work, bytes);
  return st;
}

__global__ void dequant_int4(const uint8_t* w, const float* s, float* W, int64_t N, int64_t K, int64_t G, int64_t g) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= N * K) return;
  const int64_t j = t / K, k = t % K;
  const uint8_t b = w[j * (G * g / 2) + (k >> 1)];
  const int q = ((k & 1) ? (b >> 4) : (b & 15)) - kInt4Offset;
  W[t] = static_cast<float>(q) * s[j * G + k / g];
}

// Few rows of x (M <= kInt4FusedRows, a served request): a warp per output column j reads its packed weight row
// once, a 4-byte word (8 weights of one group, as g is a multiple of 8) per lane per step, dequantizes in
// registers and accumulates all M rows; the lanes' sums add by shuffles. Dequantizing the whole weight into
// scratch first wrote and read back 8 bytes of float per 4 bits of weight on every call, for a GEMM of a few rows.
constexpr int64_t kInt4FusedRows = 8;
__global__ void qlinear_int4(const float* x, const uint8_t* w, const float* s, const float* bias, float* y, int64_t M,
                             int64_t N, int64_t K, int64_t G, int64_t g) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * (kThreads / 32) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (j >= N) return;  // a whole warp leaves together
  const uint32_t* wr = reinterpret_cast<const uint32_t*>(w + j * (G * g / 2));
  float acc[kInt4FusedRows] = {};
  for (int64_t u = lane; 8 * u < K; u += 32) {
    const uint32_t v = wr[u];
    const int64_t k0 = 8 * u;
    const float sc = s[j * G + k0 / g];
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      if (k0 + e >= K) break;
      const float wv = static_cast<float>(static_cast<int>((v >> (4 * e)) & 15u) - kInt4Offset) * sc;
#pragma unroll
      for (int m = 0; m < kInt4FusedRows; ++m)
        if (m < M) acc[m] += x[m * K + k0 + e] * wv;
    }
  }
#pragma unroll
  for (int m = 0; m < kInt4FusedRows; ++m) {
    if (m >= M) break;
    const float v = warp_sum_all(acc[m]);
    if (lane == 0) y[m * N + j] = v + (bias ? bias[j] : 0.f);
  }
}

__global__ void add_bias(float* y, const float* b, int64_t M, int64_t N) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t < M * N) y[t] += b[t % N];
}

static Status k_qlinear_int4(const TensorView* in, int nin, const TensorView& out, const double* at) {
  KILN_REQUIRE(nin == 3 || nin == 4, ST_ARG, "qlinearInt4 takes (x, packed, scales[, bias]), got ", nin, " inputs");
  const double gd = at[ATTR_QLINEAR_INT4_GROUP_SIZE];
  KILN_REQUIRE(gd == kInt4GroupSizes[0] || gd == kInt4GroupSizes[1] || gd == kInt4GroupSizes[2], ST_ARG,
               "qlinearInt4: groupSize must be 32, 64 or 128, got ", gd);
  const int64_t g = static_cast<int64_t>(gd);
  const TensorView &x = in[0], &w = in[1], &s = in[2];
  KILN_REQUIRE(x.dtype == DT_FLOAT32 && x.ndim == 2 && x.contiguous(), ST_DTYPE,
               "qlinearInt4: x must be contiguous float32 [M, K]");
  const int64_t M = x.shape[0], K = x.shape[1], G = (K + g - 1) / g;
  KILN_REQUIRE(w.dtype == DT_UINT8 && w.ndim == 2 && w.contiguous() && w.shape[1] == G * g / 2, ST_SHAPE,
               "qlinearInt4: packed must be uint8 [N, ", G * g / 2, "]");
  const int64_t N = w.shape[0];
  KILN_REQUIRE(s.dtype == DT_FLOAT32 && s.ndim == 2 && s.contiguous() && s.shape[0] == N && s.shape[1] == G, ST_SHAPE,
               "qlinearInt4: scales must be float32 [", N, ", ", G, "]");
  KILN_REQUIRE(nin == 3 || (in[3].dtype == DT_FLOAT32 && in[3].contiguous() && in[3].numel() == N), ST_SHAPE,
               "qlinearInt4: bias must be float32 [", N, "]");
  KILN_REQUIRE(out.dtype == DT_FLOAT32 && out.numel() == M * N, ST_SHAPE, "qlinearInt4 writes float32 [", M, ", ", N,
               "]");
  if (M * N == 0) return Status::ok();
  static_assert(kInt4LowNibbleFirst, "qlinear_int4 reads weight k from bits 4 * (k % 8) of a little-endian word");
  if (M <= kInt4FusedRows && reinterpret_cast<uintptr_t>(w.ptr<uint8_t>()) % 4 == 0) {
    qlinear_int4<<<blocks_for(N * 32), kThreads, 0, stream()>>>(x.ptr<float>(), w.ptr<uint8_t>(), s.ptr<float>(),
                                                                nin == 4 ? in[3].ptr<float>() : nullptr,
                                                                out.ptr<float>(), M, N, K, G, g);
    return launched("qlinearInt4");
  }
  void* wd = nullptr;
  const uint64_t bytes = static_cast<uint64_t>(N) * K * sizeof(float);
  if (Status st = scratch(bytes > 0 ? bytes : 4, &wd); !st.good()) return st;
  Status st = Status::ok();
  if (N * K > 0) {
    dequant_int4<<<blocks_for(N * K), kThreads, 0, stream()>>>(w.ptr<uint8_t>(), s.ptr<float>(),
                                                               static_cast<float*>(wd), N, K, G, g);
    st = launched("qlinearInt4 (dequantize)");
  }
  if (st.good()) st = gemm_abt(x.ptr<float>(), static_cast<float*>(wd), out.ptr<float>(), M, N, K);
  if (st.good() && nin == 4) {
    add_bias<<<blocks_for(M * N), kThreads, 0, stream()>>>(out.ptr<float>(), in[3].ptr<float>(), M, N);
    st = launched("qlinearInt4 (bias)");
  }
  release_scratch(wd, bytes > 0 ? bytes : 4);
  return st;
}

void register_quant(KernelTable& t) {
  t.fn[OP_QLINEAR_INT8] = k_qlinear_int8;
  t.fn[OP_QLINEAR_INT4] = k_qlinear_int4;
  t.fn[OP_QCONV2D_INT8] = k_qconv2d_int8;
}

}  // namespace cuda
}  // namespace kiln
