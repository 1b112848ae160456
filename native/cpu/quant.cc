// int8 linear layer: y = dequant(quant(x) Wq^T) + b, with x float32 [M, K] quantized to uint8 on the fly
// (static: one scale and zero point; dynamic: per row, from the row's range), Wq int8 [N, K] symmetric with a
// float32 scale per output channel. Integer products accumulate exactly in int32:
//   y[i, j] = sx_i * sw_j * (sum_k xq[i, k] wq[j, k] - zx_i * sum_k wq[j, k]) + b[j]
// Operands are packed 4 k-values per 32-bit lane (A: MR rows per panel, B: NR columns per panel), the layout
// AVX512-VNNI's vpdpbusd multiplies: u8 x s8, 4 products summed into each int32 lane per instruction. On
// CPUs without VNNI (and in the AVX2 and baseline passes) the same layout is multiplied with shifts and
// 32-bit multiplies, so every pass computes identical integers.
#ifndef KILN_ISA
#if defined(__x86_64__)
#include <immintrin.h>  // the AVX-512 BF16 / VNNI paths; other CPUs run the portable vector-extension passes
#endif

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "kiln/conv_geom.h"
#include "kiln/cpu_common.h"
#include "kiln/int4_layout.h"
#include "kiln/pack_cache.h"
#define KILN_ISA_FILE "cpu/quant.cc"
#include "kiln/isa_passes.h"
#else
#include "kiln/isa_helpers.inl"
#include "kiln/gemm.inl"
#include "kiln/pool2x2.inl"
#include "kiln/row_copy.inl"
#include "kiln/scratch.inl"

namespace qt {

static constexpr int NV = 2;
static constexpr int NR = NV * kVL;            // columns per B panel (32 on AVX-512)
static constexpr int MR = kVL == 16 ? 12 : 6;  // rows per A panel
static constexpr int64_t MC = MR * 16;         // rows per task
static constexpr int64_t kMaxK = 65536;        // |acc| <= K * 255 * 128 < 2^31

// B panel p: for each k4, NR lanes of 4 bytes (column c, k = 4 k4 + q at byte q). Zero padded.
static void pack_b(const int8_t* w, int64_t N, int64_t K, int64_t K4, int64_t p, int8_t* dst, int32_t* wsum) {
  if ((p + 1) * NR <= N && K % 4 == 0) {  // interior panel: 32-bit moves, no bounds checks
    for (int c = 0; c < NR; ++c) {
      const int8_t* src = w + (p * NR + c) * K;
      int32_t s = 0;
      for (int64_t k = 0; k < K; ++k) s += src[k];
      wsum[p * NR + c] = s;
      for (int64_t k4 = 0; k4 < K4; ++k4) __builtin_memcpy(dst + (k4 * NR + c) * 4, src + 4 * k4, 4);
    }
    return;
  }
  for (int c = 0; c < NR; ++c) {
    const int64_t j = p * NR + c;
    int32_t s = 0;
    for (int64_t k4 = 0; k4 < K4; ++k4)
      for (int q = 0; q < 4; ++q) {
        const int64_t k = 4 * k4 + q;
        const int8_t v = (j < N && k < K) ? w[j * K + k] : 0;
        dst[(k4 * NR + c) * 4 + q] = v;
        s += v;
      }
    wsum[p * NR + c] = s;
  }
}

struct RowQ {
  float scale;
  int32_t zero;
};

static inline uint8_t quant_u8(float x, float inv, int32_t zero) {
  float v = std::nearbyint(x * inv) + static_cast<float>(zero);
  v = v < 0.f ? 0.f : (v > 255.f ? 255.f : v);
  return static_cast<uint8_t>(v);
}

typedef uint8_t vu8 __attribute__((vector_size(kVL)));

// One row of x to uint8 (k past K is zero). The vector rounding is nearbyint's (half to even): adding and
// subtracting 1.5 * 2^23 rounds in the FPU's default mode, valid once |v| is clamped below 2^22.
static void quant_row(const float* xr, int64_t K, int64_t Kp, float scale, int32_t zero, uint8_t* dst) {
  const float inv = 1.0f / scale;
  const vfloat vinv = vsplat(inv), lo = vsplat(-512.f), hi = vsplat(512.f), magic = vsplat(12582912.f);
  const vfloat z = vsplat(static_cast<float>(zero)), zero_f = vsplat(0.f), top = vsplat(255.f);
  int64_t k = 0;
  for (; k + kVL <= K; k += kVL) {
    vfloat v = vload(xr + k) * vinv;
    v = vsel(v < lo, lo, vsel(v > hi, hi, v));
    v = (v + magic) - magic + z;
    v = vsel(v < zero_f, zero_f, vsel(v > top, top, v));
    const vu8 b = __builtin_convertvector(__builtin_convertvector(v, vint), vu8);
    __builtin_memcpy(dst + k, &b, sizeof b);
  }
  for (; k < K; ++k) dst[k] = quant_u8(xr[k], inv, zero);
  for (; k < Kp; ++k) dst[k] = 0;
}

// Quantization parameters of one row of values (a row of x in the linear, an image in the convolution), and whether it
// is all finite (scale NaN when not): the calibrated (sx, zx), or with sx = 0 the row's range widened to hold 0.
static RowQ row_quant(const float* xr, int64_t K, float sx, int32_t zx) {
  vfloat vmn = vfloat{}, vmx = vfloat{}, vnf = vfloat{};
  int64_t k = 0;
  for (; k + kVL <= K; k += kVL) {
    const vfloat v = vload(xr + k);
    vmn = vsel(v < vmn, v, vmn);
    vmx = vsel(v > vmx, v, vmx);
    vnf += v * 0.f;  // stays 0 while every value is finite
  }
  float mn = 0.f, mx = 0.f, nf = 0.f;
  for (int l = 0; l < kVL; ++l) {
    mn = vmn[l] < mn ? vmn[l] : mn;
    mx = vmx[l] > mx ? vmx[l] : mx;
    nf += vnf[l];
  }
  for (; k < K; ++k) {
    mn = xr[k] < mn ? xr[k] : mn;
    mx = xr[k] > mx ? xr[k] : mx;
    nf += xr[k] * 0.f;
  }
  if (nf != 0.f) return {NAN, 0};
  if (sx > 0.f) return {sx, zx};
  const float range = mx - mn;
  if (range == 0.f) return {1.f, 0};
  const float s = range / 255.f;
  float z = std::nearbyint(-mn / s);
  z = z < 0.f ? 0.f : (z > 255.f ? 255.f : z);
  return {s, static_cast<int32_t>(z)};
}

// A panel of rows [i0, i0 + MR) from the quantized rows xq [M, Kp]: for each k4, MR lanes of 4 bytes.
static void pack_a(const uint8_t* xq, int64_t M, int64_t Kp, int64_t K4, int64_t i0, uint8_t* dst) {
  for (int r = 0; r < MR; ++r) {
    const int64_t i = i0 + r;
    if (i >= M) {
      for (int64_t k4 = 0; k4 < K4; ++k4) __builtin_memset(dst + (k4 * MR + r) * 4, 0, 4);
      continue;
    }
    const uint8_t* src = xq + i * Kp;
    for (int64_t k4 = 0; k4 < K4; ++k4) __builtin_memcpy(dst + (k4 * MR + r) * 4, src + 4 * k4, 4);
  }
}

// acc[r][v] (NR columns) over all k4: the portable form of vpdpbusd.
static void micro_generic(int64_t K4, const uint8_t* a, const int8_t* b, vint acc[MR][NV]) {
  for (int64_t k4 = 0; k4 < K4; ++k4) {
    vint bq[NV][4];
    for (int v = 0; v < NV; ++v) {
      vint bv;
      __builtin_memcpy(&bv, b + (k4 * NR + v * kVL) * 4, sizeof bv);
      for (int q = 0; q < 4; ++q) bq[v][q] = (bv << (24 - 8 * q)) >> 24;  // sign-extend byte q
    }
    for (int r = 0; r < MR; ++r) {
      const uint8_t* ar = a + (k4 * MR + r) * 4;
      for (int q = 0; q < 4; ++q) {
        const int32_t av = ar[q];
        for (int v = 0; v < NV; ++v) acc[r][v] += av * bq[v][q];
      }
    }
  }
}

#if KILN_VEC_BYTES == 64
__attribute__((target("avx512vnni,avx512f,avx512bw"))) static void micro_vnni(int64_t K4, const uint8_t* a,
                                                                              const int8_t* b, vint acc[MR][NV]) {
  __m512i c[MR][NV];
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) {
    c[r][0] = _mm512_setzero_si512();
    c[r][1] = _mm512_setzero_si512();
  }
  for (int64_t k4 = 0; k4 < K4; ++k4) {
    const __m512i b0 = _mm512_loadu_si512(b + (k4 * NR) * 4);
    const __m512i b1 = _mm512_loadu_si512(b + (k4 * NR + 16) * 4);
    const uint8_t* ak = a + k4 * MR * 4;
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) {
      const __m512i av = _mm512_set1_epi32(*reinterpret_cast<const int32_t*>(ak + r * 4));
      c[r][0] = _mm512_dpbusd_epi32(c[r][0], av, b0);
      c[r][1] = _mm512_dpbusd_epi32(c[r][1], av, b1);
    }
  }
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) {
    _mm512_storeu_si512(reinterpret_cast<void*>(&acc[r][0]), c[r][0]);
    _mm512_storeu_si512(reinterpret_cast<void*>(&acc[r][1]), c[r][1]);
  }
}
static bool has_vnni() {
  static const bool v = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vnni") != 0;
  }();
  return v;
}
#endif

// ---- few rows (M <= kSmallM): no packing. Each int8 weight row is streamed once and dotted with the quantized
// rows (a served request, one example at a time), instead of paying to pack all of W for one product.
static constexpr int64_t kSmallM = 4;

// acc[i] = sum_k xq[i][k] w[k]; *wsum = sum_k w[k]
static void dot_rows_generic(const uint8_t* xq, int64_t Kp, int64_t M, const int8_t* w, int64_t K, int32_t* acc,
                             int32_t* wsum) {
  int32_t s = 0;
  for (int64_t k = 0; k < K; ++k) s += w[k];
  *wsum = s;
  for (int64_t i = 0; i < M; ++i) {
    const uint8_t* x = xq + i * Kp;
    int32_t a = 0;
    for (int64_t k = 0; k < K; ++k) a += static_cast<int32_t>(x[k]) * static_cast<int32_t>(w[k]);
    acc[i] = a;
  }
}

#if KILN_VEC_BYTES == 64
// GCC 12's _mm512_reduce_add_epi32 trips -Wuninitialized on an internal placeholder (a false positive)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512vnni,avx512f,avx512bw"))) static void dot_rows_vnni(const uint8_t* xq, int64_t Kp,
                                                                                 int64_t M, const int8_t* w, int64_t K,
                                                                                 int32_t* acc, int32_t* wsum) {
  __m512i c[kSmallM], cs = _mm512_setzero_si512();
  for (int i = 0; i < kSmallM; ++i) c[i] = _mm512_setzero_si512();
  const __m512i ones = _mm512_set1_epi8(1);
  const int64_t kv = K / 64 * 64;
  for (int64_t k = 0; k < kv; k += 64) {
    const __m512i wb = _mm512_loadu_si512(w + k);
    cs = _mm512_dpbusd_epi32(cs, ones, wb);
    for (int64_t i = 0; i < M; ++i) c[i] = _mm512_dpbusd_epi32(c[i], _mm512_loadu_si512(xq + i * Kp + k), wb);
  }
  int32_t s = _mm512_reduce_add_epi32(cs);
  for (int64_t k = kv; k < K; ++k) s += w[k];
  *wsum = s;
  for (int64_t i = 0; i < M; ++i) {
    int32_t a = _mm512_reduce_add_epi32(c[i]);
    for (int64_t k = kv; k < K; ++k) a += static_cast<int32_t>(xq[i * Kp + k]) * static_cast<int32_t>(w[k]);
    acc[i] = a;
  }
}
#pragma GCC diagnostic pop
#endif

static Status k_qlinear_int8(const TensorView* in, int nin, const TensorView& out, const double* attrs) {
  KILN_REQUIRE(nin == 3 || nin == 4, ST_ARG, "qlinearInt8 takes (x, wq, wscale[, bias]), got ", nin, " inputs");
  const TensorView &x = in[0], &w = in[1], &ws = in[2];
  KILN_REQUIRE(x.dtype == DT_FLOAT32 && x.ndim == 2 && x.contiguous(), ST_DTYPE,
               "qlinearInt8: x must be contiguous float32 [M, K], got ", kDTypeNames[x.dtype], " ", shape_str(x));
  KILN_REQUIRE(w.dtype == DT_INT8 && w.ndim == 2 && w.contiguous(), ST_DTYPE,
               "qlinearInt8: wq must be contiguous int8 [N, K], got ", kDTypeNames[w.dtype], " ", shape_str(w));
  const int64_t M = x.shape[0], K = x.shape[1], N = w.shape[0];
  KILN_REQUIRE(w.shape[1] == K, ST_SHAPE, "qlinearInt8: x ", shape_str(x), " and wq ", shape_str(w), " differ in K");
  KILN_REQUIRE(K <= kMaxK, ST_SHAPE, "qlinearInt8: K = ", K, " is over ", kMaxK,
               " (int32 accumulators could overflow)");
  KILN_REQUIRE(ws.dtype == DT_FLOAT32 && ws.contiguous() && ws.numel() == N, ST_SHAPE,
               "qlinearInt8: wscale must be float32 [", N, "], got ", shape_str(ws));
  const float* bias = nullptr;
  if (nin == 4) {
    KILN_REQUIRE(in[3].dtype == DT_FLOAT32 && in[3].contiguous() && in[3].numel() == N, ST_SHAPE,
                 "qlinearInt8: bias must be float32 [", N, "], got ", shape_str(in[3]));
    bias = in[3].ptr<float>();
  }
  KILN_REQUIRE(out.dtype == DT_FLOAT32 && out.ndim == 2 && out.shape[0] == M && out.shape[1] == N, ST_SHAPE,
               "qlinearInt8 writes float32 [", M, ", ", N, "]");
  const double sx = attrs[ATTR_QLINEAR_INT8_X_SCALE], zx = attrs[ATTR_QLINEAR_INT8_X_ZERO];
  KILN_REQUIRE(std::isfinite(sx) && sx >= 0 && std::isfinite(zx) && zx >= 0 && zx <= 255 && zx == std::floor(zx),
               ST_ARG, "qlinearInt8: xScale must be >= 0 (0 = dynamic per row) and xZero an integer in [0, 255], got ",
               sx, " and ", zx);
  if (M == 0 || N == 0) return Status::ok();
  const float* px = x.ptr<float>();
  const int8_t* pw = w.ptr<int8_t>();
  const float* psw = ws.ptr<float>();
  float* po = out.ptr<float>();

  // per-row quantization parameters (and the check that x is finite, in both modes)
  std::vector<RowQ> rq(static_cast<size_t>(M));
  const bool dynamic = sx == 0;
  KILN_REQUIRE(dynamic || static_cast<float>(sx) > 0.f, ST_ARG, "qlinearInt8: xScale ", sx, " underflows float32");
  parallel_for(M, std::max<int64_t>(1, 16384 / std::max<int64_t>(K, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i)
      rq[i] = row_quant(px + i * K, K, dynamic ? 0.f : static_cast<float>(sx), static_cast<int32_t>(zx));
  });
  for (const auto& r : rq)
    KILN_REQUIRE(std::isfinite(r.scale), ST_ARG, "qlinearInt8: x has NaN or infinite values (cannot be quantized)");

  const int64_t K4 = (K + 3) / 4, Kp = 4 * K4;
  ThreadBuffer<0, uint8_t> xqb;  // the calling thread's workspaces (kiln/scratch.inl)
  ThreadBuffer<1, int8_t> bpb;
  uint8_t* const xqp = xqb.get(M * Kp);
  parallel_for(M, std::max<int64_t>(1, 16384 / std::max<int64_t>(K, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) quant_row(px + i * K, K, Kp, rq[i].scale, rq[i].zero, xqp + i * Kp);
  });
  if (M <= kSmallM) {
    const double ops = 2.0 * static_cast<double>(M) * N * K;
    parallel_for(N, ops > 2e6 ? std::max<int64_t>(1, N / (4 * num_threads())) : N, [&](int64_t lo, int64_t hi) {
      int32_t acc[kSmallM], ws;
      for (int64_t j = lo; j < hi; ++j) {
#if KILN_VEC_BYTES == 64
        if (has_vnni())
          dot_rows_vnni(xqp, Kp, M, pw + j * K, K, acc, &ws);
        else
#endif
          dot_rows_generic(xqp, Kp, M, pw + j * K, K, acc, &ws);
        for (int64_t i = 0; i < M; ++i) {
          const int64_t a = static_cast<int64_t>(acc[i]) - static_cast<int64_t>(rq[i].zero) * ws;
          po[i * N + j] = static_cast<float>(a) * (rq[i].scale * psw[j]) + (bias ? bias[j] : 0.f);
        }
      }
    });
    return Status::ok();
  }

  // W packed into B panels (then each column's sum): once per weight, kept while its buffer is unchanged
  const int64_t npanels = (N + NR - 1) / NR, panel_bytes = K4 * NR * 4;
  const auto pack = [&](void* dst) {
    int8_t* const bp = static_cast<int8_t*>(dst);
    int32_t* const ws = reinterpret_cast<int32_t*>(bp + npanels * panel_bytes);
    parallel_for(npanels, std::max<int64_t>(1, 65536 / std::max<int64_t>(panel_bytes, 1)), [&](int64_t lo, int64_t hi) {
      for (int64_t p = lo; p < hi; ++p) pack_b(pw, N, K, K4, p, bp + p * panel_bytes, ws);
    });
  };
  const size_t packed_bytes = static_cast<size_t>(npanels * (panel_bytes + NR * 4));
  const int8_t* bpp =
      static_cast<const int8_t*>(packed_input(in[1], pack_tag({0x71696e38, kVL, NR, N, K}), packed_bytes, pack));
  if (!bpp) {
    int8_t* const own = bpb.get(static_cast<int64_t>(packed_bytes));
    pack(own);
    bpp = own;
  }
  const int32_t* const wsum = reinterpret_cast<const int32_t*>(bpp + npanels * panel_bytes);

  const int64_t mblocks = (M + MC - 1) / MC;
  const int threads = num_threads();
  const int64_t nchunks = gemm_chunks(mblocks, npanels, threads);
  const int64_t ppc = (npanels + nchunks - 1) / nchunks;
  const double ops = 2.0 * static_cast<double>(M) * N * K;
  parallel_for(mblocks * nchunks, ops > 4e5 ? 1 : mblocks * nchunks, [&](int64_t lo, int64_t hi) {
    uint8_t* const apack = thread_scratch<uint8_t, 10>(((MC + MR - 1) / MR) * K4 * MR * 4);
    int64_t packed = -1;
    for (int64_t t = lo; t < hi; ++t) {
      const int64_t mb = t / nchunks, ch = t % nchunks;
      const int64_t i0 = mb * MC, mc = std::min(MC, M - i0);
      const int64_t apanels = (mc + MR - 1) / MR;
      if (packed != mb) {
        for (int64_t ap = 0; ap < apanels; ++ap) pack_a(xqp, M, Kp, K4, i0 + ap * MR, apack + ap * K4 * MR * 4);
        packed = mb;
      }
      for (int64_t p = ch * ppc; p < std::min(npanels, (ch + 1) * ppc); ++p) {
        const int8_t* bp = bpp + p * K4 * NR * 4;
        for (int64_t ap = 0; ap < apanels; ++ap) {
          vint acc[MR][NV];
          for (int r = 0; r < MR; ++r)
            for (int v = 0; v < NV; ++v) acc[r][v] = vint{};
#if KILN_VEC_BYTES == 64
          if (has_vnni())
            micro_vnni(K4, apack + ap * K4 * MR * 4, bp, acc);
          else
#endif
            micro_generic(K4, apack + ap * K4 * MR * 4, bp, acc);
          // epilogue: dequantize, add bias, store. (acc - z * wsum) = sum (xq - z) wq fits in int32, so the
          // wrapping int32 vector arithmetic is exact.
          const int64_t j0 = p * NR;
          if (j0 + NR <= N) {
            vint wsv[NV];
            vfloat swv[NV], bv[NV];
            for (int v = 0; v < NV; ++v) {
              __builtin_memcpy(&wsv[v], wsum + j0 + v * kVL, sizeof(vint));
              swv[v] = vload(psw + j0 + v * kVL);
              bv[v] = bias ? vload(bias + j0 + v * kVL) : vfloat{};
            }
            for (int r = 0; r < MR; ++r) {
              const int64_t i = i0 + ap * MR + r;
              if (i >= M) break;
              const vfloat si = vsplat(rq[i].scale);
              const vint zi = vsplati(rq[i].zero);
              for (int v = 0; v < NV; ++v) {
                const vfloat a = __builtin_convertvector(acc[r][v] - zi * wsv[v], vfloat);
                vstore(po + i * N + j0 + v * kVL, a * (si * swv[v]) + bv[v]);
              }
            }
            continue;
          }
          for (int r = 0; r < MR; ++r) {
            const int64_t i = i0 + ap * MR + r;
            if (i >= M) break;
            const float si = rq[i].scale;
            const int32_t zi = rq[i].zero;
            for (int v = 0; v < NV; ++v)
              for (int l = 0; l < kVL; ++l) {
                const int64_t j = p * NR + v * kVL + l;
                if (j >= N) break;
                const int64_t a =
                    static_cast<int64_t>(acc[r][v][l]) - static_cast<int64_t>(zi) * wsum[p * NR + v * kVL + l];
                po[i * N + j] = static_cast<float>(a) * (si * psw[j]) + (bias ? bias[j] : 0.f);
              }
          }
        }
      }
    }
  });
  return Status::ok();
}

// ---- int8 convolution (qconv2dInt8): a direct convolution over a uint8 copy of each image, no column matrix.
// The copy: for each stride phase (a, b) (padded rows a, a + sh, ...; padded columns b, b + sw, ...) and each
// block of 4 channels, a plane of Lq positions of 4 bytes (one per channel of the block), phase row r and column
// u at position r*Wq + u. Padding holds the zero point (it stands for 0); channels past C hold 0 (their weights
// are 0). Tap (i, j) then reads phase ((i*dh) % sh, (j*dw) % sw) shifted by (i*dh/sh)*Wq + (j*dw)/sw positions,
// the same shift for every output position q = oh*Wq + ow, so a tile of consecutive q reads consecutive bytes:
// 16 positions x 4 channels per 64-byte load, the u8 operand of vpdpbusd, against 4 channels of one output
// channel's weights broadcast as the s8 operand. Positions ow >= OW of each row are spare: computed, dropped.
// Where that copy would be far larger than the image (huge padding or dilation), each output sums its in-bounds
// taps directly (qconv_simple). Both give y = sx * ws[o] * sum over taps (q(x) - zx) * w + bias[o], in int32.

static constexpr int kQMR = 8;                  // output channels per tile (weights broadcast)
static constexpr int kQNV = kVL == 16 ? 3 : 2;  // vectors of positions per tile
static constexpr int64_t kQT = kQNV * kVL;      // positions per tile

struct QConv {
  ConvGeom g;
  // rowtap: the 4 bytes of a word are 4 (channel, kernel column) pairs rather than 4 channels, and a tap is a
  // kernel row: with 1-3 channels that packs the words full (C = 1, 3x3: 3 words per position, not 9)
  bool rowtap = false;
  int64_t B = 0, T = 0;  // words (blocks) per tap, taps
  int64_t Hq = 0, Wq = 0, Lq = 0, phases = 0;
  int64_t image_bytes() const { return phases * B * Lq * 4; }
};

// The direct plan, or false when its copy would be far larger than the image (then qconv_simple runs).
static bool qconv_plan(const ConvGeom& g, QConv& p) {
  p.g = g;
  const int64_t C4 = (g.C + 3) / 4, G = (g.C * g.kw + 3) / 4;
  p.rowtap = g.sw == 1 && G < C4 * g.kw;
  p.B = p.rowtap ? G : C4;
  p.T = p.rowtap ? g.kh : g.kh * g.kw;
  p.phases = g.sh * g.sw;
  const double Hp = static_cast<double>(g.H) + 2.0 * g.ph, Wp = static_cast<double>(g.W) + 2.0 * g.pw;
  const double Hq = std::ceil(Hp / g.sh), Wq = std::ceil(Wp / g.sw);
  const double shift = std::floor((g.kh - 1.0) * g.dh / g.sh) * Wq + std::floor((g.kw - 1.0) * g.dw / g.sw);
  const double Lq = std::max(Hq * Wq, static_cast<double>(g.OH) * Wq + kQT + shift);
  const double copy = static_cast<double>(p.phases) * p.B * 4.0 * Lq;
  if (copy > 4.0 * 4.0 * g.C * g.H * g.W + 262144.0) return false;
  p.Hq = static_cast<int64_t>(Hq);
  p.Wq = static_cast<int64_t>(Wq);
  p.Lq = static_cast<int64_t>(Lq);
  return true;
}

// (tap, word, byte) of weight w[o][c][i][j] in the packed layout
static void qconv_slot(const QConv& p, int64_t c, int64_t i, int64_t j, int64_t& t, int64_t& blk, int& b) {
  if (p.rowtap) {
    const int64_t e = c * p.g.kw + j;
    t = i, blk = e / 4, b = static_cast<int>(e % 4);
  } else {
    t = i * p.g.kw + j, blk = c / 4, b = static_cast<int>(c % 4);
  }
}

// Sets every (phase, block) plane of an image's copy to the padding: byte b of block blk holds the zero point
// where 4 blk + b < valid (channels, or (channel, kernel column) pairs for the rowtap copy), 0 past it.
static void qconv_init_planes(const QConv& p, int32_t zero, int64_t valid, uint8_t* dst) {
  uint32_t* const words = reinterpret_cast<uint32_t*>(dst);
  for (int64_t a = 0; a < p.phases; ++a)
    for (int64_t blk = 0; blk < p.B; ++blk) {
      uint32_t w32 = 0;
      for (int b = 0; b < 4; ++b)
        if (4 * blk + b < valid) w32 |= static_cast<uint32_t>(zero) << (8 * b);
      std::fill(words + (a * p.B + blk) * p.Lq, words + (a * p.B + blk + 1) * p.Lq, w32);
    }
}

// The rowtap copy of one image: word u of phase row r of group q holds, at byte b, channel c's padded input at
// row r*sh + phase, column u + j*dw, for pair e = 4q + b = c*kw + j (zero point outside the image, 0 past C*kw).
// codes: C*H*W bytes of scratch; row: (C + 1) * (Wq + (kw-1)*dw) bytes.
static void qconv_fill_rowtap(const QConv& p, const float* x, RowQ q, uint8_t* codes, uint8_t* row, uint8_t* dst) {
  const ConvGeom& g = p.g;
  const int64_t HW = g.H * g.W, E = g.C * g.kw, span = p.Wq + (g.kw - 1) * g.dw;
  quant_row(x, g.C * HW, g.C * HW, q.scale, q.zero, codes);
  uint32_t* const words = reinterpret_cast<uint32_t*>(dst);
  qconv_init_planes(p, q.zero, E, dst);
  std::memset(row, q.zero, static_cast<size_t>(g.C * span));
  std::memset(row + g.C * span, 0, static_cast<size_t>(span));  // the source of bytes past C*kw
  for (int64_t ih = 0; ih < g.H; ++ih) {
    for (int64_t c = 0; c < g.C; ++c) {
      uint8_t* __restrict d = row + c * span + g.pw;
      const uint8_t* __restrict s = codes + c * HW + ih * g.W;
      for (int64_t iw = 0; iw < g.W; ++iw) {  // 28-ish bytes: a memmove call here cost more than the copy
        uint8_t v = s[iw];
#if defined(__x86_64__)
        __asm__("" : "+r"(v));
#endif
        d[iw] = v;
      }
    }
    const int64_t pr = ih + g.ph, a = pr % g.sh, r = pr / g.sh;
    for (int64_t blk = 0; blk < p.B; ++blk) {
      const uint8_t* src[4];
      for (int b = 0; b < 4; ++b) {
        const int64_t e = 4 * blk + b;
        src[b] = e < E ? row + (e / g.kw) * span + (e % g.kw) * g.dw : row + g.C * span;
      }
      const uint8_t* __restrict s0 = src[0], * __restrict s1 = src[1], * __restrict s2 = src[2], * __restrict s3 = src[3];
      uint32_t* __restrict d = words + (a * p.B + blk) * p.Lq + r * p.Wq;
      for (int64_t u = 0; u < p.Wq; ++u)
        d[u] = s0[u] | (static_cast<uint32_t>(s1[u]) << 8) | (static_cast<uint32_t>(s2[u]) << 16) |
               (static_cast<uint32_t>(s3[u]) << 24);
    }
  }
}

static void qconv_fill(const QConv& p, const float* x, RowQ q, const int64_t* colmap, uint8_t* codes, uint8_t* dst) {
  const ConvGeom& g = p.g;
  const int64_t HW = g.H * g.W;
  quant_row(x, g.C * HW, g.C * HW, q.scale, q.zero, codes);
  qconv_init_planes(p, q.zero, g.C, dst);
  for (int64_t c4 = 0; c4 < p.B; ++c4) {
    const uint8_t* ch[4];
    for (int b = 0; b < 4; ++b) ch[b] = 4 * c4 + b < g.C ? codes + (4 * c4 + b) * HW : nullptr;
    for (int64_t ih = 0; ih < g.H; ++ih) {
      const int64_t pr = ih + g.ph;
      uint32_t* base = reinterpret_cast<uint32_t*>(dst) + ((pr % g.sh) * g.sw * p.B + c4) * p.Lq + (pr / g.sh) * p.Wq;
      const uint8_t* r[4];
      for (int b = 0; b < 4; ++b) r[b] = ch[b] ? ch[b] + ih * g.W : nullptr;
      if (r[3]) {  // 4 real channels
        if (g.sw == 1) {
          uint32_t* __restrict d = base + g.pw;
          for (int64_t iw = 0; iw < g.W; ++iw)
            d[iw] = r[0][iw] | (static_cast<uint32_t>(r[1][iw]) << 8) | (static_cast<uint32_t>(r[2][iw]) << 16) |
                    (static_cast<uint32_t>(r[3][iw]) << 24);
        } else {
          for (int64_t iw = 0; iw < g.W; ++iw)
            base[colmap[iw]] = r[0][iw] | (static_cast<uint32_t>(r[1][iw]) << 8) |
                               (static_cast<uint32_t>(r[2][iw]) << 16) | (static_cast<uint32_t>(r[3][iw]) << 24);
        }
        continue;
      }
      for (int64_t iw = 0; iw < g.W; ++iw) {  // the last block, fewer than 4 channels: the rest stay 0
        uint32_t w = 0;
        for (int b = 0; b < 4; ++b)
          if (r[b]) w |= static_cast<uint32_t>(r[b][iw]) << (8 * b);
        base[colmap[iw]] = w;
      }
    }
  }
}

#if KILN_VEC_BYTES == 64
// acc[m][v*16 + l]: output channel m of the block at position l of vector v of the tile at img (byte offset of
// the tile's first position in plane 0), over T taps (byte offsets toff) of B words each (planes bstride bytes
// apart). w: the block's weights [tap][word][kQMR] as 4-byte words.
__attribute__((target("avx512vnni,avx512f,avx512bw"))) static void qtile_vnni(const uint8_t* img, const int64_t* toff,
                                                                              int64_t T, int64_t B, int64_t bstride,
                                                                              const int32_t* w, int32_t* acc) {
  __m512i c[kQMR][kQNV];
#pragma GCC unroll 8
  for (int m = 0; m < kQMR; ++m)
    for (int v = 0; v < kQNV; ++v) c[m][v] = _mm512_setzero_si512();
  for (int64_t t = 0; t < T; ++t) {
    const uint8_t* a = img + toff[t];
    const int32_t* wt = w + t * B * kQMR;
    for (int64_t blk = 0; blk < B; ++blk, a += bstride, wt += kQMR) {
      __m512i av[kQNV];
      for (int v = 0; v < kQNV; ++v) av[v] = _mm512_loadu_si512(a + v * 64);
#pragma GCC unroll 8
      for (int m = 0; m < kQMR; ++m) {
        const __m512i bw = _mm512_set1_epi32(wt[m]);
        for (int v = 0; v < kQNV; ++v) c[m][v] = _mm512_dpbusd_epi32(c[m][v], av[v], bw);
      }
    }
  }
#pragma GCC unroll 8
  for (int m = 0; m < kQMR; ++m)
    for (int v = 0; v < kQNV; ++v) _mm512_storeu_si512(acc + m * kQT + v * 16, c[m][v]);
}
#endif

// The portable form of qtile_vnni: the same integers from shifts and 32-bit multiplies.
static void qtile_generic(const uint8_t* img, const int64_t* toff, int64_t T, int64_t B, int64_t bstride,
                          const int32_t* w, int32_t* acc) {
  vint c[kQMR][kQNV];
  for (int m = 0; m < kQMR; ++m)
    for (int v = 0; v < kQNV; ++v) c[m][v] = vint{};
  for (int64_t t = 0; t < T; ++t) {
    const uint8_t* a = img + toff[t];
    const int32_t* wt = w + t * B * kQMR;
    for (int64_t blk = 0; blk < B; ++blk, a += bstride, wt += kQMR) {
      vint av[kQNV][4];
      for (int v = 0; v < kQNV; ++v) {
        vint x;
        __builtin_memcpy(&x, a + v * kVL * 4, sizeof x);
        for (int b = 0; b < 4; ++b) av[v][b] = (x >> (8 * b)) & 255;
      }
      for (int m = 0; m < kQMR; ++m) {
        const int32_t wm = wt[m];
        int32_t wb[4];
        for (int b = 0; b < 4; ++b) wb[b] = static_cast<int8_t>(static_cast<uint32_t>(wm) >> (8 * b));
        for (int v = 0; v < kQNV; ++v)
          c[m][v] += av[v][0] * wb[0] + av[v][1] * wb[1] + av[v][2] * wb[2] + av[v][3] * wb[3];
      }
    }
  }
  for (int m = 0; m < kQMR; ++m)
    for (int v = 0; v < kQNV; ++v) __builtin_memcpy(acc + m * kQT + v * kVL, &c[m][v], sizeof(vint));
}

// The max of each pool x pool window at stride pool of rows [0, rows) (a multiple of pool) of one channel's
// results src (rows ld apart; overwritten), by max_pool_takes' rule, into dst [rows / pool, PW]: 2x2 by
// pool2x2_row's vectors; other windows by a max down each window's rows into its first row, then across, each a
// loop of independent lanes (one window at a time was a latency chain, 2x slower than maxPool2d after it)
static void qconv_pool_rows(float* src, int64_t ld, int64_t rows, int64_t pool, int64_t PW, float* dst) {
  if (pool == 2) {
    for (int64_t pr = 0; pr < rows / 2; ++pr)
      pool2x2_row(src + 2 * pr * ld, src + (2 * pr + 1) * ld, dst + pr * PW, PW);
    return;
  }
  const int64_t cols = PW * pool;
  for (int64_t pr = 0; pr < rows / pool; ++pr, dst += PW) {
    float* __restrict t = src + pr * pool * ld;
    for (int64_t i = 1; i < pool; ++i) {
      const float* __restrict r = t + i * ld;
      for (int64_t c = 0; c < cols; ++c) t[c] = max_pool_takes(r[c], t[c], false) ? r[c] : t[c];
    }
    for (int64_t pc = 0; pc < PW; ++pc) dst[pc] = t[pc * pool];
    for (int64_t j = 1; j < pool; ++j)
      for (int64_t pc = 0; pc < PW; ++pc) {
        const float v = t[pc * pool + j];
        dst[pc] = max_pool_takes(v, dst[pc], false) ? v : dst[pc];
      }
  }
}

static void qconv_direct(const QConv& p, const float* px, const TensorView& wv, const float* psw, const float* bias,
                         bool relu, int64_t pool, const RowQ* rq, float* po) {
  const ConvGeom& g = p.g;
  const int64_t N = g.N, O = g.O, B = p.B, T = p.T, img = g.C * g.H * g.W;
  // with a pool, only the rows and columns its windows cover: PH * pool of them, PW * pool
  const int64_t PH = g.OH / pool, PW = g.OW / pool, OHc = PH * pool, OWc = PW * pool;
  // weights: [ob][tap][word][kQMR] words of 4 bytes (0 past C or C*kw, and past O), then each output channel's
  // sum. Packed once per weight and kept while its buffer is unchanged: at batch 1 packing per call cost ~3x the
  // products (perf, the demo CNN's second convolution)
  const int64_t nb = (O + kQMR - 1) / kQMR, words = nb * T * B * kQMR;
  const int8_t* const pw = wv.ptr<int8_t>();
  const auto pack = [&](void* dst) {
    int32_t* const wpk = static_cast<int32_t*>(dst);
    int32_t* const wsum = wpk + words;
    std::fill(wpk, wpk + words, 0);
    for (int64_t o = 0; o < O; ++o) {
      int32_t s = 0;
      for (int64_t c = 0; c < g.C; ++c)
        for (int64_t i = 0; i < g.kh; ++i)
          for (int64_t j = 0; j < g.kw; ++j) {
            const int8_t v = pw[((o * g.C + c) * g.kh + i) * g.kw + j];
            s += v;
            int64_t t, blk;
            int b;
            qconv_slot(p, c, i, j, t, blk, b);
            reinterpret_cast<uint8_t*>(&wpk[(((o / kQMR) * T + t) * B + blk) * kQMR + o % kQMR])[b] =
                static_cast<uint8_t>(v);
          }
      wsum[o] = s;
    }
  };
  const size_t packed_bytes = static_cast<size_t>(words + O) * 4;
  const int32_t* wpk = static_cast<const int32_t*>(
      packed_input(wv, pack_tag({0x71636e76, kVL, kQMR, O, g.C, g.kh, g.kw, p.rowtap, B, T}), packed_bytes, pack));
  if (!wpk) {
    int32_t* const own = thread_scratch<int32_t, 6>(words + O);
    pack(own);
    wpk = own;
  }
  const int32_t* const wsum = wpk + words;
  // each tap's byte offset: its phase's planes, shifted by its rows (and columns, but for rowtap) of the phase
  std::vector<int64_t> toff(static_cast<size_t>(T));
  for (int64_t i = 0; i < g.kh; ++i)
    for (int64_t j = 0; j < (p.rowtap ? 1 : g.kw); ++j) {
      const int64_t phase = ((i * g.dh) % g.sh) * g.sw + (j * g.dw) % g.sw;
      toff[p.rowtap ? i : i * g.kw + j] = (phase * B * p.Lq + (i * g.dh / g.sh) * p.Wq + (j * g.dw) / g.sw) * 4;
    }
  std::vector<int64_t> colmap(static_cast<size_t>(g.W));
  for (int64_t iw = 0; iw < g.W; ++iw) {
    const int64_t pc = iw + g.pw;
    colmap[iw] = (pc % g.sw) * B * p.Lq + pc / g.sw;
  }
  // quantize every image into its copy (the calling thread's workspace: no page faults per call)
  ThreadBuffer<1, uint8_t> xqb;
  uint8_t* const xq = xqb.get(N * p.image_bytes());
  parallel_for(N, 1, [&](int64_t lo, int64_t hi) {
    uint8_t* codes = thread_scratch<uint8_t, 0>(img);
    uint8_t* row = p.rowtap ? thread_scratch<uint8_t, 3>((g.C + 1) * (p.Wq + (g.kw - 1) * g.dw)) : nullptr;
    for (int64_t n = lo; n < hi; ++n) {
      if (p.rowtap)
        qconv_fill_rowtap(p, px + n * img, rq[n], codes, row, xq + n * p.image_bytes());
      else
        qconv_fill(p, px + n * img, rq[n], colmap.data(), codes, xq + n * p.image_bytes());
    }
  });
  // work items: (image, block of output rows, whole pool windows); the tile results go to rows of width Wq,
  // then drop the spare (or pool them)
  const int threads = num_threads();
  int64_t rb = OHc;
  if (N < 2 * threads) rb = (OHc + (2 * threads + N - 1) / N - 1) / ((2 * threads + N - 1) / N);
  rb = std::max<int64_t>(1, std::min(rb, (int64_t{1} << 18) / std::max<int64_t>(1, O * p.Wq)));
  rb = (rb + pool - 1) / pool * pool;
  const int64_t nblk = (OHc + rb - 1) / rb;
  const int64_t rowlen = rb * p.Wq + kQT;
#if KILN_VEC_BYTES == 64
  const bool vnni = has_vnni();
#endif
  parallel_for(N * nblk, 1, [&](int64_t lo, int64_t hi) {
    float* tmp = thread_scratch<float, 1>(O * rowlen);
    alignas(64) int32_t acc[kQMR * kQT];
    for (int64_t it = lo; it < hi; ++it) {
      const int64_t n = it / nblk, r0 = (it % nblk) * rb, r1 = std::min(OHc, r0 + rb);
      const RowQ q = rq[n];
      const uint8_t* im = xq + n * p.image_bytes();
      const int64_t q0 = r0 * p.Wq, qend = (r1 - 1) * p.Wq + OWc;
      for (int64_t ob = 0; ob < nb; ++ob) {
        const int32_t* wb = wpk + ob * T * B * kQMR;
        const int mr = static_cast<int>(std::min<int64_t>(kQMR, O - ob * kQMR));
        for (int64_t qt = q0; qt < qend; qt += kQT) {
#if KILN_VEC_BYTES == 64
          if (vnni)
            qtile_vnni(im + qt * 4, toff.data(), T, B, p.Lq * 4, wb, acc);
          else
#endif
            qtile_generic(im + qt * 4, toff.data(), T, B, p.Lq * 4, wb, acc);
          // (acc - zx * wsum) = sum (q(x) - zx) w fits in int32, so the wrapping vector arithmetic is exact
          for (int m = 0; m < mr; ++m) {
            const int64_t o = ob * kQMR + m;
            const vint zw = vsplati(q.zero * wsum[o]);
            const vfloat sc = vsplat(q.scale * psw[o]), bv = vsplat(bias ? bias[o] : 0.f);
            float* dst = tmp + o * rowlen + (qt - q0);
            for (int v = 0; v < kQNV; ++v) {
              vint a;
              __builtin_memcpy(&a, acc + m * kQT + v * kVL, sizeof a);
              const vfloat y = __builtin_convertvector(a - zw, vfloat) * sc + bv;
              vstore(dst + v * kVL, relu ? vsel(y < vsplat(0.f), vsplat(0.f), y) : y);
            }
          }
        }
      }
      for (int64_t o = 0; o < O; ++o) {
        if (pool > 1) {
          qconv_pool_rows(tmp + o * rowlen, p.Wq, r1 - r0, pool, PW, po + ((n * O + o) * PH + r0 / pool) * PW);
          continue;
        }
        for (int64_t r = r0; r < r1; ++r)
          copy_row(po + ((n * O + o) * g.OH + r) * g.OW, tmp + o * rowlen + (r - r0) * p.Wq, g.OW);
      }
    }
  });
}

// Any geometry: the image quantized as it is (N C H W bytes), each output summing its in-bounds taps.
static void qconv_simple(const ConvGeom& g, const float* px, const int8_t* pw, const float* psw, const float* bias,
                         bool relu, int64_t pool, const RowQ* rq, float* po) {
  const int64_t img = g.C * g.H * g.W, taps = g.kh * g.kw, PH = g.OH / pool, PW = g.OW / pool;
  ThreadBuffer<1, uint8_t> xqb;
  uint8_t* const xq = xqb.get(g.N * img);
  parallel_for(g.N, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t n = lo; n < hi; ++n) quant_row(px + n * img, img, img, rq[n].scale, rq[n].zero, xq + n * img);
  });
  parallel_for(g.N * g.O, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      const int64_t n = t / g.O, o = t % g.O;
      const uint8_t* xi = xq + n * img;
      const int8_t* wo = pw + o * g.C * taps;
      const int32_t z = rq[n].zero;
      const float sc = rq[n].scale * psw[o], b = bias ? bias[o] : 0.f;
      for (int64_t ph = 0; ph < PH; ++ph)
        for (int64_t pc = 0; pc < PW; ++pc)
          po[((n * g.O + o) * PH + ph) * PW + pc] = qconv_window(g, xi, wo, z, sc, b, relu, pool, ph, pc);
    }
  });
}

static Status k_qconv2d_int8(const TensorView* in, int nin, const TensorView& out, const double* attrs) {
  ConvGeom g;
  float sx = 0.f;
  int32_t zx = 0;
  const float* bias = nullptr;
  bool relu = false;
  int64_t pool = 1;
  if (Status s = read_qconv(in, nin, out, attrs, g, sx, zx, bias, relu, pool); !s.good()) return s;
  if (g.N == 0 || g.O == 0) return Status::ok();
  const float* px = in[0].ptr<float>();
  const int64_t img = g.C * g.H * g.W;
  std::vector<RowQ> rq(static_cast<size_t>(g.N));
  parallel_for(g.N, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t n = lo; n < hi; ++n) rq[n] = row_quant(px + n * img, img, sx, zx);
  });
  for (const auto& r : rq)
    KILN_REQUIRE(std::isfinite(r.scale), ST_ARG, "qconv2dInt8: x has NaN or infinite values (cannot be quantized)");
  QConv p;
  if (qconv_plan(g, p)) {
    qconv_direct(p, px, in[1], in[2].ptr<float>(), bias, relu, pool, rq.data(), out.ptr<float>());
    return Status::ok();
  }
  qconv_simple(g, px, in[1].ptr<int8_t>(), in[2].ptr<float>(), bias, relu, pool, rq.data(), out.ptr<float>());
  return Status::ok();
}

typedef uint8_t vbytes __attribute__((vector_size(kVL)));

// Elements [k0, k0 + kc) of one int4 weight row, dequantized: dst[t] = (nibble k0 + t - offset) * sc[(k0 + t) / g].
// k0 is even (sgemm's K blocks are whole vectors), so each group's stretch is whole bytes but for an odd end.
static void int4_range(const uint8_t* row, const float* sc, int64_t k0, int64_t kc, int64_t g, float* dst) {
  for (int64_t k = k0, end = k0 + kc; k < end;) {
    const int64_t q = k / g, gend = std::min(end, (q + 1) * g), pairs = (gend - k) / 2;
    const float s = sc[q];
    const uint8_t* b = row + k / 2;
    float* d = dst + (k - k0);
    const vfloat vs = vsplat(s);
    int64_t t = 0;
    for (; t + kVL <= pairs; t += kVL) {  // kVL bytes: their low and high nibbles, interleaved back
      vbytes v;
      __builtin_memcpy(&v, b + t, sizeof v);
      const vfloat lo = __builtin_convertvector(__builtin_convertvector(v & 15, vint) - kInt4Offset, vfloat) * vs;
      const vfloat hi = __builtin_convertvector(__builtin_convertvector(v >> 4, vint) - kInt4Offset, vfloat) * vs;
      vfloat z0, z1;
      vzip(lo, hi, z0, z1);
      vstore(d + 2 * t, z0);
      vstore(d + 2 * t + kVL, z1);
    }
    for (; t < pairs; ++t) {
      d[2 * t] = static_cast<float>((b[t] & 15) - kInt4Offset) * s;
      d[2 * t + 1] = static_cast<float>((b[t] >> 4) - kInt4Offset) * s;
    }
    if ((gend - k) & 1) d[2 * pairs] = static_cast<float>((b[pairs] & 15) - kInt4Offset) * s;
    k = gend;
  }
}

// sgemm's B packer for x W^T with an int4 W: each panel's rows of W are dequantized into a small buffer (NR
// rows x kc floats, in cache) and transposed into the panel, so the float W is never written out whole.
struct Int4Weights {
  const uint8_t* w;
  const float* s;
  int64_t N, G, g;
};
static void int4_pack_b(const void* ctx, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* dst) {
  const Int4Weights& b = *static_cast<const Int4Weights*>(ctx);
  float* const rows = thread_scratch<float, 7>(kGemmNR * kc);
  for (int64_t p = 0; p * kGemmNR < nc; ++p) {
    const int64_t jb = j0 + p * kGemmNR, w = std::min<int64_t>(kGemmNR, b.N - jb);
    for (int64_t r = 0; r < w; ++r)
      int4_range(b.w + (jb + r) * (b.G * b.g / 2), b.s + (jb + r) * b.G, k0, kc, b.g, rows + r * kc);
    pack_cols_panel(rows, kc, w, kc, dst + p * kc * kGemmNR);
  }
}

// Up to this many rows the int4 linear reads its weights as they are (below), not through the packed GEMM: at 8
// rows this still ran ~2x faster than dequantizing into GEMM panels.
static constexpr int64_t kInt4SmallM = 8;

// y[i] = sum_k x[i][k] W[j][k] for one int4 weight row and M <= kInt4SmallM rows of x given as their even and odd
// elements (xe, xo: M rows of Kh = G*g/2 floats each, zero past K): kVL bytes at a time, low nibbles against the
// even elements and high against the odd, so the nibbles need no interleaving and W is never written out.
static void int4_dot_rows(const uint8_t* row, const float* sc, int64_t G, int64_t g, const float* xe, const float* xo,
                          int64_t Kh, int64_t M, float* y) {
  vfloat acc[kInt4SmallM];
  for (int64_t i = 0; i < M; ++i) acc[i] = vfloat{};
  for (int64_t q = 0; q < G; ++q) {
    const vfloat s = vsplat(sc[q]);
    for (int64_t t = q * g / 2; t < (q + 1) * g / 2; t += kVL) {
      vbytes b;
      __builtin_memcpy(&b, row + t, sizeof b);
      const vfloat lo = __builtin_convertvector(__builtin_convertvector(b & 15, vint) - kInt4Offset, vfloat) * s;
      const vfloat hi = __builtin_convertvector(__builtin_convertvector(b >> 4, vint) - kInt4Offset, vfloat) * s;
      for (int64_t i = 0; i < M; ++i) acc[i] += lo * vload(xe + i * Kh + t) + hi * vload(xo + i * Kh + t);
    }
  }
  for (int64_t i = 0; i < M; ++i) y[i] = vhsum(acc[i]);
}

// int4 weight-only linear. With at most kInt4SmallM rows of x, each weight row's nibbles are dotted with the rows as
// they are read (int4_dot_rows). Otherwise the float32 GEMM computes x W^T with W dequantized (nibble - 8) *
// scale straight into its packed B panels (int4_pack_b): dequantizing all of W into a float buffer first, which
// the GEMM then read again to pack, made the layer 2x slower than float32 at batch 32. Layout:
// native/include/kiln/int4_layout.h.
static Status k_qlinear_int4(const TensorView* in, int nin, const TensorView& out, const double* attrs) {
  KILN_REQUIRE(nin == 3 || nin == 4, ST_ARG, "qlinearInt4 takes (x, packed, scales[, bias]), got ", nin, " inputs");
  const TensorView &x = in[0], &w = in[1], &s = in[2];
  const double gd = attrs[ATTR_QLINEAR_INT4_GROUP_SIZE];
  KILN_REQUIRE(gd == kInt4GroupSizes[0] || gd == kInt4GroupSizes[1] || gd == kInt4GroupSizes[2], ST_ARG,
               "qlinearInt4: groupSize must be 32, 64 or 128, got ", gd);
  const int64_t g = static_cast<int64_t>(gd);
  KILN_REQUIRE(x.dtype == DT_FLOAT32 && x.ndim == 2 && x.contiguous(), ST_DTYPE,
               "qlinearInt4: x must be contiguous float32 [M, K], got ", kDTypeNames[x.dtype], " ", shape_str(x));
  const int64_t M = x.shape[0], K = x.shape[1];
  const int64_t G = (K + g - 1) / g;
  KILN_REQUIRE(w.dtype == DT_UINT8 && w.ndim == 2 && w.contiguous() && w.shape[1] == G * g / 2, ST_SHAPE,
               "qlinearInt4: packed must be contiguous uint8 [N, ", G * g / 2, "], got ", kDTypeNames[w.dtype], " ",
               shape_str(w));
  const int64_t N = w.shape[0];
  KILN_REQUIRE(s.dtype == DT_FLOAT32 && s.ndim == 2 && s.contiguous() && s.shape[0] == N && s.shape[1] == G, ST_SHAPE,
               "qlinearInt4: scales must be contiguous float32 [", N, ", ", G, "], got ", shape_str(s));
  const float* bias = nullptr;
  if (nin == 4) {
    KILN_REQUIRE(in[3].dtype == DT_FLOAT32 && in[3].contiguous() && in[3].numel() == N, ST_SHAPE,
                 "qlinearInt4: bias must be float32 [", N, "], got ", shape_str(in[3]));
    bias = in[3].ptr<float>();
  }
  KILN_REQUIRE(out.dtype == DT_FLOAT32 && out.ndim == 2 && out.shape[0] == M && out.shape[1] == N, ST_SHAPE,
               "qlinearInt4 writes float32 [", M, ", ", N, "]");
  if (M == 0 || N == 0) return Status::ok();
  const uint8_t* pw = w.ptr<uint8_t>();
  const float* ps = s.ptr<float>();
  float* po = out.ptr<float>();
  if (M <= kInt4SmallM) {
    // a few rows (a served request): the nibbles of each weight row are dotted with the rows of x as they are
    // read, never dequantizing W (dequantizing and packing all of it cost 20x the products at batch 1)
    const double ops = 2.0 * static_cast<double>(M) * N * K;
    const float* px = x.ptr<float>();
    const int64_t Kh = G * g / 2;  // g >= 32, so Kh is a whole number of vectors of bytes
    float* const xs = thread_scratch<float, 5>(2 * M * Kh);
    for (int64_t i = 0; i < M; ++i)
      for (int64_t t = 0; t < Kh; ++t) {
        xs[i * Kh + t] = 2 * t < K ? px[i * K + 2 * t] : 0.f;
        xs[(M + i) * Kh + t] = 2 * t + 1 < K ? px[i * K + 2 * t + 1] : 0.f;
      }
    parallel_for(N, ops > 2e6 ? std::max<int64_t>(1, N / (4 * num_threads())) : N, [&](int64_t lo, int64_t hi) {
      float y[kInt4SmallM];
      for (int64_t j = lo; j < hi; ++j) {
        int4_dot_rows(pw + j * Kh, ps + j * G, G, g, xs, xs + M * Kh, Kh, M, y);
        for (int64_t i = 0; i < M; ++i) po[i * N + j] = y[i] + (bias ? bias[j] : 0.f);
      }
    });
    return Status::ok();
  }
  const Int4Weights iw{pw, ps, N, G, g};
  GemmArgs ga{M, N, K, x.ptr<float>(), K, 1, nullptr, 0, 0, po, N, false, true};
  ga.pack_b = int4_pack_b;
  ga.pack_b_ctx = &iw;
  sgemm(ga);
  if (bias)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) po[i * N + j] += bias[j];
  return Status::ok();
}

}  // namespace qt

void register_quant(KernelTable& t) {
  t.fn[OP_QLINEAR_INT8] = qt::k_qlinear_int8;
  t.fn[OP_QLINEAR_INT4] = qt::k_qlinear_int4;
  t.fn[OP_QCONV2D_INT8] = qt::k_qconv2d_int8;
}

#endif
