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

#include "kiln/cpu_common.h"
#include "kiln/int4_layout.h"
#define KILN_ISA_FILE "cpu/quant.cc"
#include "kiln/isa_passes.h"
#else
#include "kiln/isa_helpers.inl"
#include "kiln/gemm.inl"

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

  // per-row quantization parameters
  // per-row quantization parameters (and the check that x is finite, in both modes)
  std::vector<RowQ> rq(static_cast<size_t>(M));
  const bool dynamic = sx == 0;
  KILN_REQUIRE(dynamic || static_cast<float>(sx) > 0.f, ST_ARG, "qlinearInt8: xScale ", sx, " underflows float32");
  {
    parallel_for(M, std::max<int64_t>(1, 16384 / std::max<int64_t>(K, 1)), [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        const float* xr = px + i * K;
        float mn = 0.f, mx = 0.f;  // the range always holds 0, so 0 is exact
        bool finite = true;
        for (int64_t k = 0; k < K; ++k) {
          mn = xr[k] < mn ? xr[k] : mn;
          mx = xr[k] > mx ? xr[k] : mx;
          finite &= std::isfinite(xr[k]);
        }
        if (!finite) {
          rq[i] = {NAN, 0};
          continue;
        }
        if (!dynamic) {
          rq[i] = {static_cast<float>(sx), static_cast<int32_t>(zx)};
          continue;
        }
        const float range = mx - mn;
        if (range == 0.f) {
          rq[i] = {1.f, 0};
          continue;
        }
        const float s = range / 255.f;
        float z = std::nearbyint(-mn / s);
        z = z < 0.f ? 0.f : (z > 255.f ? 255.f : z);
        rq[i] = {s, static_cast<int32_t>(z)};
      }
    });
  }
  for (const auto& r : rq)
    KILN_REQUIRE(std::isfinite(r.scale), ST_ARG, "qlinearInt8: x has NaN or infinite values (cannot be quantized)");

  const int64_t K4 = (K + 3) / 4, Kp = 4 * K4;
  static thread_local std::vector<uint8_t> xq;  // grow-only per-thread buffers: no mmap + page faults per call
  if (xq.size() < static_cast<size_t>(M * Kp)) xq.resize(static_cast<size_t>(M * Kp));
  uint8_t* const xqp = xq.data();  // the lambdas run on other threads: a thread_local must not be named there
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

  const int64_t npanels = (N + NR - 1) / NR;
  static thread_local std::vector<int8_t> bpack;
  if (bpack.size() < static_cast<size_t>(npanels * K4 * NR * 4))
    bpack.resize(static_cast<size_t>(npanels * K4 * NR * 4));
  int8_t* const bpp = bpack.data();
  std::vector<int32_t> wsum(static_cast<size_t>(npanels * NR));
  parallel_for(npanels, std::max<int64_t>(1, 65536 / std::max<int64_t>(K4 * NR * 4, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t p = lo; p < hi; ++p) pack_b(pw, N, K, K4, p, bpp + p * K4 * NR * 4, wsum.data());
  });

  const int64_t mblocks = (M + MC - 1) / MC;
  const int threads = num_threads();
  int64_t nchunks = 1;
  if (threads > 1 && mblocks < 2 * threads) nchunks = std::min<int64_t>(npanels, (2 * threads + mblocks - 1) / mblocks);
  const int64_t ppc = (npanels + nchunks - 1) / nchunks;
  nchunks = (npanels + ppc - 1) / ppc;
  const double ops = 2.0 * static_cast<double>(M) * N * K;
  parallel_for(mblocks * nchunks, ops > 4e5 ? 1 : mblocks * nchunks, [&](int64_t lo, int64_t hi) {
    static thread_local std::vector<uint8_t> apack;
    if (apack.size() < static_cast<size_t>(((MC + MR - 1) / MR) * K4 * MR * 4))
      apack.resize(static_cast<size_t>(((MC + MR - 1) / MR) * K4 * MR * 4));
    int64_t packed = -1;
    for (int64_t t = lo; t < hi; ++t) {
      const int64_t mb = t / nchunks, ch = t % nchunks;
      const int64_t i0 = mb * MC, mc = std::min(MC, M - i0);
      const int64_t apanels = (mc + MR - 1) / MR;
      if (packed != mb) {
        for (int64_t ap = 0; ap < apanels; ++ap) pack_a(xqp, M, Kp, K4, i0 + ap * MR, apack.data() + ap * K4 * MR * 4);
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
            micro_vnni(K4, apack.data() + ap * K4 * MR * 4, bp, acc);
          else
#endif
            micro_generic(K4, apack.data() + ap * K4 * MR * 4, bp, acc);
          // epilogue: dequantize, add bias, store. (acc - z * wsum) = sum (xq - z) wq fits in int32, so the
          // wrapping int32 vector arithmetic is exact.
          const int64_t j0 = p * NR;
          if (j0 + NR <= N) {
            vint wsv[NV];
            vfloat swv[NV], bv[NV];
            for (int v = 0; v < NV; ++v) {
              __builtin_memcpy(&wsv[v], wsum.data() + j0 + v * kVL, sizeof(vint));
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

// int4 weight-only linear: W [N, K] is dequantized (nibble - 8) * scale into a per-thread float buffer, row
// panels in parallel, then multiplied by the packed float32 GEMM as x W^T (B = W viewed transposed, no copy).
// Layout: native/include/kiln/int4_layout.h.
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
  static thread_local std::vector<float> wbuf;  // grow-only
  if (wbuf.size() < static_cast<size_t>(N * K)) wbuf.resize(static_cast<size_t>(N * K));
  float* const wd = wbuf.data();  // the lambdas run on other threads: a thread_local must not be named there
  const uint8_t* pw = w.ptr<uint8_t>();
  const float* ps = s.ptr<float>();
  parallel_for(N, std::max<int64_t>(1, 16384 / std::max<int64_t>(K, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t j = lo; j < hi; ++j) {
      const uint8_t* row = pw + j * (G * g / 2);
      float* dst = wd + j * K;
      for (int64_t k = 0; k < K; ++k) {
        const int q = ((k & 1) ? (row[k >> 1] >> 4) : (row[k >> 1] & 15)) - kInt4Offset;
        dst[k] = static_cast<float>(q) * ps[j * G + k / g];
      }
    }
  });
  float* po = out.ptr<float>();
  sgemm(GemmArgs{M, N, K, x.ptr<float>(), K, 1, wd, 1, K, po, N, false, true});
  if (bias)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) po[i * N + j] += bias[j];
  return Status::ok();
}

}  // namespace qt

void register_quant(KernelTable& t) {
  t.fn[OP_QLINEAR_INT8] = qt::k_qlinear_int8;
  t.fn[OP_QLINEAR_INT4] = qt::k_qlinear_int4;
}

#endif
